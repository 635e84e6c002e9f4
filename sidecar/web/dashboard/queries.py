"""What the overview shows, read from the store in a handful of grouped queries.

Sections that list steps group by the typed audit `pattern`/`action` and clock `kind`, so a pattern
that lands later (stuck, high value, compliance...) appears here without a code change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.audit import StepAction
from sidecar.domain import LeadState
from sidecar.engine.clocks import SLA
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, Rep, SyncCursor, Team
from sidecar.web.dashboard.ladder import Ladders, ladders
from sidecar.web.dashboard.providers import QueueView, queues


@dataclass(frozen=True)
class DueLead:
    crm: str
    crm_id: str
    name: str
    owner: str
    team: str
    rule_id: str
    due_at: datetime


@dataclass(frozen=True)
class Poll:
    crm: str
    at: datetime | None
    age_s: float | None


@dataclass
class Overview:
    now: datetime
    waiting_first_response: int = 0
    due_next_hour: list[DueLead] = field(default_factory=list)
    overdue: list[DueLead] = field(default_factory=list)  # due_at: when the clock started
    overdue_by_owner: Counter[tuple[str, str]] = field(default_factory=Counter)  # (owner, team)
    overdue_by_team: Counter[str] = field(default_factory=Counter)
    breaches_today: dict[str, Counter[str]] = field(default_factory=dict)  # "market"/"source" -> value -> n
    breaches_week: dict[str, Counter[str]] = field(default_factory=dict)
    on_time: int = 0
    breached: int = 0
    reassignments: int = 0
    reverts: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    dead: list[tuple[str, str, str]] = field(default_factory=list)  # (lead name, effect, what to fix)
    polls: list[Poll] = field(default_factory=list)
    steps: list[tuple[str, str, str, int]] = field(default_factory=list)  # (pattern, action, kind, n)
    clocks: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, status, n)
    queues: list[QueueView] = field(default_factory=list)

    @property
    def hit_rate(self) -> float | None:
        total = self.on_time + self.breached
        return self.on_time / total if total else None


def names(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    """Rep id -> name and team id -> name, for showing people instead of ids."""
    reps = {rep_id: name for rep_id, name in session.execute(select(Rep.id, Rep.name))}
    teams = {team_id: name for team_id, name in session.execute(select(Team.id, Team.name))}
    return reps, teams


def week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of `now`'s week: "this week" on the overview."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def breach_rows(session: Session, facts: Ladders, since: datetime | None) -> list[tuple[AuditRow, Lead]]:
    """Every breach step (since `since`) with its lead, oldest first."""
    query = select(AuditRow, Lead).join(Lead, Lead.id == AuditRow.lead_id).where(
        AuditRow.rule_id.in_(set(facts.breach_rule.values())), AuditRow.step_key.is_not(None))
    rows = session.execute((query.where(AuditRow.at >= since) if since else query).order_by(AuditRow.at)).all()
    # A warning's "ignored" row carries the warning's rule id, never the breach's; the version check
    # keeps a rule id that was a warning in another version out.
    return [(row, lead) for row, lead in rows
            if facts.is_breach(row.policy_version, row.rule_id) and row.action is not None]


def _by_market_source(rows: list[tuple[AuditRow, Lead]]) -> dict[str, Counter[str]]:
    return {"market": Counter(lead.market or "unknown" for _, lead in rows),
            "source": Counter(lead.source or "unknown" for _, lead in rows)}


def _clocks(session: Session, view: Overview, facts: Ladders, reps: dict[str, str], teams: dict[str, str]) -> None:
    now = view.now
    # Overdue, due next hour and the hit rate are about the SLA ladder; stuck clocks show under "clocks".
    for clock, lead in session.execute(select(Clock, Lead).join(Lead, Lead.id == Clock.lead_id)
                                       .where(Clock.kind == SLA)):
        breached = facts.breached(clock)
        view.breached += breached
        view.on_time += clock.status == "closed" and not breached
        if clock.status == "closed":
            continue
        owner, team = reps.get(lead.owner_id or "", lead.owner_id or "nobody"), teams.get(lead.team_id or "", "-")
        if breached:
            view.overdue_by_owner[(owner, team)] += 1
            view.overdue_by_team[team] += 1
            view.overdue.append(DueLead(lead.crm, lead.crm_id, lead.name, owner, team,
                                        facts.pending_rule(clock) or "-", clock.started_at))
        elif clock.next_due_at is not None and clock.next_due_at <= now + timedelta(hours=1):
            view.due_next_hour.append(DueLead(lead.crm, lead.crm_id, lead.name, owner, team,
                                              facts.pending_rule(clock) or clock.rule_id, clock.next_due_at))
    view.due_next_hour.sort(key=lambda due: due.due_at)
    view.overdue.sort(key=lambda late: late.due_at)


def overview(session: Session, book: PolicyBook, now: datetime) -> Overview:
    view = Overview(now)
    facts = ladders(session, book)
    reps, teams = names(session)
    view.waiting_first_response = session.scalar(
        select(func.count(func.distinct(Lead.id))).join(Clock, Clock.lead_id == Lead.id).where(
            Lead.state == LeadState.NEW.value, Lead.last_progress_at.is_(None), Clock.status != "closed")) or 0
    _clocks(session, view, facts, reps, teams)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = breach_rows(session, facts, week_start(now))
    view.breaches_week = _by_market_source(week)
    view.breaches_today = _by_market_source([(row, lead) for row, lead in week if row.at >= today])
    actions = dict(session.execute(select(AuditRow.action, func.count()).group_by(AuditRow.action)).all())
    view.reassignments = int(actions.get(StepAction.REASSIGN.value, 0))
    view.reverts = int(actions.get(StepAction.REVERT.value, 0))
    view.outbox = {str(s): int(n) for s, n in session.execute(
        select(OutboxRow.status, func.count()).group_by(OutboxRow.status))}
    view.dead = [(name or "-", action, error or "") for name, action, error in session.execute(
        select(Lead.name, OutboxRow.action, OutboxRow.last_error)
        .join(AuditRow, AuditRow.id == OutboxRow.audit_id, isouter=True)
        .join(Lead, Lead.id == AuditRow.lead_id, isouter=True)
        .where(OutboxRow.status == "dead").order_by(OutboxRow.id.desc()).limit(20))]
    view.polls = [Poll(row.crm, row.last_poll_at, (now - row.last_poll_at).total_seconds() if row.last_poll_at
                       else None) for row in session.scalars(select(SyncCursor).where(SyncCursor.stream == "leads")
                                                             .order_by(SyncCursor.crm))]
    view.steps = [(pattern or "-", action or "-", kind, int(n)) for pattern, action, kind, n in session.execute(
        select(AuditRow.pattern, AuditRow.action, AuditRow.kind, func.count())
        .group_by(AuditRow.pattern, AuditRow.action, AuditRow.kind)
        .order_by(AuditRow.pattern, AuditRow.action, AuditRow.kind))]
    view.clocks = [(kind, status, int(n)) for kind, status, n in session.execute(
        select(Clock.kind, Clock.status, func.count()).group_by(Clock.kind, Clock.status)
        .order_by(Clock.kind, Clock.status))]
    view.queues = queues(session, now)
    return view
