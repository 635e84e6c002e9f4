"""`sidecar report`: the management questions of seed 002, answered from the store with names.

Each answer is a `Section` (a question, columns, rows, and how it was counted), so every output
format renders the same figures. Breaches are found by their typed ladder fraction (the first step
at or past 100 %, per policy version), reassignments by the typed audit action: never by `kind`.

Lead-based answers count leads created in [start, end); step-based ones count audit rows in it;
"waiting" and "overdue" are as of `now`. Response times are wall-clock time from arrival to the
first real response (a progress activity or leaving NEW).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.audit import StepAction
from sidecar.domain import LeadState
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import AuditRow, Clock, Lead, LeadEvent, Rep, Team
from sidecar.web.dashboard.ladder import ladders

QUALIFIED = {LeadState.QUALIFIED.value, LeadState.PROPOSAL.value, LeadState.CONVERTED.value}
BOOKED = {LeadState.PROPOSAL.value, LeadState.CONVERTED.value}
SPEED_BUCKETS = ((timedelta(hours=1), "within 1 h"), (timedelta(hours=4), "1-4 h"),
                 (timedelta(hours=24), "4-24 h"), (timedelta.max, "over 24 h"))


@dataclass(frozen=True)
class Section:
    key: str
    question: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    how: str  # how it was counted, printed under the answer


@dataclass
class Report:
    start: datetime
    end: datetime
    now: datetime
    sections: list[Section] = field(default_factory=list)


def _minutes(span: timedelta) -> float:
    return round(span.total_seconds() / 60, 1)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


class _Facts:
    """What several answers share: names, each lead's first response and states reached."""

    def __init__(self, session: Session, start: datetime, end: datetime) -> None:
        self.reps = {str(i): str(n) for i, n in session.execute(select(Rep.id, Rep.name))}
        self.teams = {str(i): str(n) for i, n in session.execute(select(Team.id, Team.name))}
        self.leads = list(session.scalars(select(Lead).where(Lead.created_at >= start, Lead.created_at < end)
                                          .order_by(Lead.created_at, Lead.id)))
        ids = [lead.id for lead in self.leads]
        self.first_response: dict[int, datetime] = {}
        self.reached: dict[int, set[str]] = defaultdict(set)
        self.progress: dict[int, list[LeadEvent]] = defaultdict(list)
        events: list[LeadEvent] = list(session.scalars(
            select(LeadEvent).where(LeadEvent.lead_id.in_(ids), LeadEvent.kind.in_(("progress", "state_changed")))
            .order_by(LeadEvent.at, LeadEvent.id))) if ids else []
        for event in events:
            responded = event.kind == "progress" or (event.old == LeadState.NEW.value and event.new is not None)
            if responded:
                self.first_response.setdefault(event.lead_id, event.at)
                self.progress[event.lead_id].append(event)
            if event.kind == "state_changed" and event.new:
                self.reached[event.lead_id].add(event.new)
            if event.kind == "progress" and event.new == "meeting_held":
                self.reached[event.lead_id].add(LeadState.PROPOSAL.value)  # a meeting held counts as booked

    def owner(self, rep_id: str | None) -> str:
        return self.reps.get(rep_id or "", rep_id or "nobody")

    def team(self, team_id: str | None) -> str:
        return self.teams.get(team_id or "", team_id or "-")


def _waiting(session: Session, facts: _Facts, now: datetime) -> Section:
    running = select(Clock.lead_id).where(Clock.kind == "sla", Clock.status != "closed")
    rows = session.scalars(select(Lead).where(  # IN, not DISTINCT: PostgreSQL cannot compare JSON columns
        Lead.state == LeadState.NEW.value, Lead.last_progress_at.is_(None), Lead.id.in_(running))
        .order_by(Lead.created_at, Lead.id))
    return Section("waiting_first_response", "How many leads are waiting for a first response?",
                   ("lead", "owner", "team", "source", "arrived (UTC)", "waiting (min)"),
                   [(lead.name, facts.owner(lead.owner_id), facts.team(lead.team_id), lead.source or "-",
                     f"{lead.created_at:%Y-%m-%d %H:%M}" if lead.created_at else "-",
                     _minutes(now - lead.created_at) if lead.created_at else "-") for lead in rows],
                   "NEW leads with no call, email or other progress yet and a running SLA clock, as of now")


def _overdue_by_owner(session: Session, facts: _Facts, book: PolicyBook) -> Section:
    ladder = ladders(session, book)
    counts: Counter[tuple[str, str]] = Counter()
    for clock, lead in session.execute(select(Clock, Lead).join(Lead, Lead.id == Clock.lead_id).where(
            Clock.kind == "sla", Clock.status == "open")):
        if ladder.breached(clock):
            counts[(facts.owner(lead.owner_id), facts.team(lead.team_id))] += 1
    return Section("overdue_by_owner", "Which owners have overdue leads?", ("owner", "team", "overdue leads"),
                   [(owner, team, n) for (owner, team), n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))],
                   "open SLA clocks past their breach step, by the lead's current owner, as of now")


def breaches(session: Session, book: PolicyBook, start: datetime, end: datetime) -> list[tuple[AuditRow, Lead]]:
    """Breach steps in [start, end) with their lead (the typed breach step of each policy version)."""
    ladder = ladders(session, book)
    rows = session.execute(select(AuditRow, Lead).join(Lead, Lead.id == AuditRow.lead_id).where(
        AuditRow.at >= start, AuditRow.at < end, AuditRow.step_key.is_not(None), AuditRow.action.is_not(None))
        .order_by(AuditRow.at)).all()
    return [(row, lead) for row, lead in rows if ladder.is_breach(row.policy_version, row.rule_id)]


def _missed_by_source(facts: _Facts, breached: list[tuple[AuditRow, Lead]]) -> Section:
    missed = {lead.id for _, lead in breached}
    total: Counter[str] = Counter(lead.source or "unknown" for lead in facts.leads)
    late: Counter[str] = Counter(lead.source or "unknown" for lead in facts.leads if lead.id in missed)
    return Section("missed_by_source", "Which lead sources have the most missed SLAs?",
                   ("source", "leads", "missed SLA", "missed %"),
                   [(source, total[source], late[source], _pct(late[source], total[source]))
                    for source in sorted(total, key=lambda s: (-late[s], s))],
                   "leads that arrived in the period; missed = the SLA breach step fired for the lead")


def _slowest(facts: _Facts) -> Section:
    times: dict[str, list[float]] = defaultdict(list)
    waiting: Counter[str] = Counter()
    for lead in facts.leads:
        category = lead.intent or "unclassified"
        answered = facts.first_response.get(lead.id)
        if answered is None or lead.created_at is None:
            waiting[category] += 1
        else:
            times[category].append(_minutes(answered - lead.created_at))
    categories = sorted(times.keys() | waiting.keys(),
                        key=lambda c: -(statistics.median(times[c]) if times[c] else float("inf")))
    return Section("slowest_categories", "Which categories (intent tiers) are slowest to handle?",
                   ("category", "answered", "median first response (min)", "slowest (min)", "not answered"),
                   [(c, len(times[c]), statistics.median(times[c]) if times[c] else "-",
                     max(times[c]) if times[c] else "-", waiting[c]) for c in categories],
                   "leads that arrived in the period, by intent tier; slowest first (unanswered ones last count)")


def _rules(session: Session, start: datetime, end: datetime) -> Section:
    rows = session.execute(select(AuditRow.rule_id, AuditRow.kind, func.count()).where(
        AuditRow.at >= start, AuditRow.at < end, AuditRow.rule_id.is_not(None), AuditRow.step_key.is_not(None),
        AuditRow.action.is_not(None))  # steps that did something, not observations about them (ignored...)
        .group_by(AuditRow.rule_id, AuditRow.kind)).all()
    ordered = sorted(((str(r), str(k), int(n)) for r, k, n in rows), key=lambda x: (-x[2], x[0], x[1]))
    return Section("rules_firing", "Which escalation rules fire most often?", ("rule", "audited as", "times"),
                   [(rule, kind, n) for rule, kind, n in ordered],
                   "steps taken in the period (notify, reassign, task...), by rule id")


def _recovered(session: Session, facts: _Facts, breached: list[tuple[AuditRow, Lead]],
               start: datetime, end: datetime) -> Section:
    escalated: dict[int, tuple[datetime, Lead]] = {}
    reassigns = session.execute(select(AuditRow, Lead).join(Lead, Lead.id == AuditRow.lead_id).where(
        AuditRow.at >= start, AuditRow.at < end, AuditRow.action == StepAction.REASSIGN.value)).all()
    for row, lead in sorted([*breached, *reassigns], key=lambda pair: pair[0].at):
        escalated.setdefault(lead.id, (row.at, lead))
    rows = []
    for lead_id, (at, lead) in sorted(escalated.items(), key=lambda item: item[1][0]):
        after = next((e for e in facts.progress.get(lead_id, []) if e.at > at), None)
        if after is None:
            after = session.scalars(select(LeadEvent).where(
                LeadEvent.lead_id == lead_id, LeadEvent.at > at, LeadEvent.kind == "progress")
                .order_by(LeadEvent.at)).first()
        if after is not None:
            by = str(after.detail.get("by") or "") or lead.owner_id
            rows.append((lead.name, f"{at:%Y-%m-%d %H:%M}", f"{after.at:%Y-%m-%d %H:%M}",
                         after.new or "-", facts.owner(by)))
    return Section("recovered", "Which leads were recovered after escalation?",
                   ("lead", "escalated (UTC)", "recovered (UTC)", "by", "owner"), rows,
                   "leads breached or reassigned in the period that then got a real response")


def _speed_vs_outcome(facts: _Facts) -> Section:
    buckets: dict[str, list[Lead]] = {label: [] for _, label in SPEED_BUCKETS}
    buckets["no response"] = []
    for lead in facts.leads:
        answered = facts.first_response.get(lead.id)
        if answered is None or lead.created_at is None:
            buckets["no response"].append(lead)
            continue
        label = next(label for limit, label in SPEED_BUCKETS if answered - lead.created_at <= limit)
        buckets[label].append(lead)
    rows = []
    for label, leads in buckets.items():
        qualified = sum(bool(facts.reached[lead.id] & QUALIFIED) for lead in leads)
        booked = sum(bool(facts.reached[lead.id] & BOOKED) for lead in leads)
        rows.append((label, len(leads), qualified, _pct(qualified, len(leads)), booked, _pct(booked, len(leads))))
    return Section("speed_vs_outcome", "Does response speed go with qualification and booking?",
                   ("first response", "leads", "qualified", "qualified %", "booked", "booked %"), rows,
                   "leads that arrived in the period; qualified = reached QUALIFIED, PROPOSAL or CONVERTED; "
                   "booked = reached PROPOSAL or CONVERTED, or a meeting was held")


def speed_vs_outcome(session: Session, start: datetime, end: datetime) -> Section:
    """That one answer alone, for the dashboard's chart."""
    return _speed_vs_outcome(_Facts(session, start, end))


def build_report(session: Session, book: PolicyBook, start: datetime, end: datetime, now: datetime) -> Report:
    facts = _Facts(session, start, end)
    breached = breaches(session, book, start, end)
    return Report(start, end, now, [
        _waiting(session, facts, now), _overdue_by_owner(session, facts, book), _missed_by_source(facts, breached),
        _slowest(facts), _rules(session, start, end), _recovered(session, facts, breached, start, end),
        _speed_vs_outcome(facts)])
