"""Outcome logging (seed 002 "Escalation should feed outcome logging"): one row per lead.

A lead's row is derived from what is already stored: its first SLA clock (the first-response
window), the audit rows the ladder wrote for it, the effects they enqueued, and its lead events.
`refresh` rebuilds the rows on demand (export, reports): the same history always gives the same
row, and nothing has to be kept in step by hand while steps fire. SLA hit rate is then a GROUP BY
over `sla_met` (`hit_rates`).

Definitions (each column of `LeadOutcome`):
- first response: the first progress activity (call, e-mail, meeting, documented disqualify) or the
  first move out of NEW into a worked state; `first_response_s` counts business seconds from arrival
  in the lead's market.
- `sla_met`: the first response came before any SLA breach of the lead (the breach's due instant,
  not when the tick noticed it); False once a breach came first, None while neither happened (or
  the lead left the pipeline without either): such leads count in no hit rate. A high-value or
  ladder reassignment restarts the clock but not this question.
- reminder / manager escalation / reassigned: a warning step fired, a manager was notified, an owner
  change was decided (SLA or high-value) for this lead.
- `recovered_after_escalation`: progress after the first breach; `closed_lost_due_to_delay`: closed
  (CLOSED or UNQUALIFIED) after a breach with no progress after it; `no_response`: no response at all.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlalchemy.orm import Session

from sidecar.domain import LeadState, ProgressKind
from sidecar.engine.patterns.keys import parse_step_key
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import AuditRow, Clock, Lead, LeadEvent, LeadOutcome, OutboxRow, Rep, Team

WORKED = {LeadState.CONTACTED.value, LeadState.QUALIFIED.value, LeadState.PROPOSAL.value,
          LeadState.CONVERTED.value, LeadState.UNQUALIFIED.value}
QUALIFIED = {LeadState.QUALIFIED.value, LeadState.PROPOSAL.value, LeadState.CONVERTED.value}
DISQUALIFIED = {LeadState.UNQUALIFIED.value, LeadState.DISQUALIFIED_COMPLIANCE.value}
LOST = {LeadState.CLOSED.value, LeadState.UNQUALIFIED.value}
GROUPS = ("market", "source", "team_id", "owner_id", "intent")
OUTCOME_FIELDS = ("crm", "crm_id", "market", "source", "team_id", "owner_id", "intent", "arrived_at", "window_s",
                 "first_response_at", "first_response_s", "sla_met", "reminder_fired", "manager_escalated",
                 "reassigned", "contacted", "qualified", "disqualified", "booked", "no_response",
                 "closed_lost_due_to_delay", "recovered_after_escalation")
# Names beside the ids, so a reader of the export needs no lookup: the lead's, its first owner's, the team's.
NAMES = ("lead_name", "team_name", "owner_name")
EXPORT_FIELDS = ("crm", "crm_id", "lead_name", "market", "source", "team_id", "team_name", "owner_id", "owner_name",
                 *(name for name in OUTCOME_FIELDS if name not in ("crm", "crm_id", "market", "source", "team_id",
                                                                 "owner_id")))


def _responses(events: list[LeadEvent]) -> list[datetime]:
    """When someone worked the lead: progress activities and moves out of NEW into a worked state."""
    return sorted(e.at for e in events if e.kind == "progress"
                  or (e.kind == "state_changed" and e.old == LeadState.NEW.value and e.new in WORKED))


@dataclass
class History:
    """What one lead's outcome is computed from (loaded in bulk by `refresh`)."""

    events: list[LeadEvent] = field(default_factory=list)  # by time
    decisions: list[AuditRow] = field(default_factory=list)  # by id
    first_clock: Clock | None = None
    manager_told: bool = False


def load_histories(session: Session, lead_ids: Sequence[int]) -> dict[int, History]:
    """Histories of many leads in four queries (not four per lead)."""
    histories = {lead_id: History() for lead_id in lead_ids}
    for event in session.scalars(select(LeadEvent).where(LeadEvent.lead_id.in_(lead_ids))
                                 .order_by(LeadEvent.at, LeadEvent.id)):
        histories[event.lead_id].events.append(event)
    for clock in session.scalars(select(Clock).where(Clock.lead_id.in_(lead_ids), Clock.kind == "sla")
                                 .order_by(Clock.started_at.desc(), Clock.id.desc())):
        histories[clock.lead_id].first_clock = clock  # the earliest one is written last
    for row in session.scalars(select(AuditRow).where(AuditRow.lead_id.in_(lead_ids)).order_by(AuditRow.id)):
        histories[row.lead_id or 0].decisions.append(row)
    told = select(AuditRow.lead_id).join(OutboxRow, OutboxRow.audit_id == AuditRow.id).where(
        AuditRow.lead_id.in_(lead_ids), OutboxRow.idempotency_key.endswith(":notify:manager"))
    for lead_id in session.scalars(told.distinct()):
        histories[lead_id or 0].manager_told = True
    return histories


def outcome_of(session: Session, book: PolicyBook, lead: Lead, history: History | None = None) -> dict[str, Any]:
    """The outcome columns of one lead, from its stored history."""
    history = history or load_histories(session, [lead.id])[lead.id]
    events, decisions, first_clock = history.events, history.decisions, history.first_clock
    # The SLA ladder's steps of this lead: (decision, clock id, fraction of the window).
    ladder = [(row, parse_step_key(row.step_key or ""), float(row.details.get("fraction", 0)))
              for row in decisions if row.pattern == "sla"]
    ladder_steps = [(row, parsed[0], fraction) for row, parsed, fraction in ladder if parsed is not None]
    breaches = sorted(_due(row) for row, _clock, fraction in ladder_steps if fraction >= 1.0)
    responses = _responses(events)
    first_response = responses[0] if responses else None
    states = {e.new for e in events if e.kind in ("created", "state_changed")} | {lead.state}
    progress = {e.new for e in events if e.kind == "progress"}
    first_owner = _first_owner(lead, events, decisions)
    rep = session.get(Rep, first_owner) if first_owner else None  # the identity map answers repeats
    first_breach = breaches[0] if breaches else None
    progress_after_breach = first_breach is not None and any(at > first_breach for at in responses)
    return {
        "crm": lead.crm, "crm_id": lead.crm_id, "market": lead.market, "source": lead.source,
        "team_id": rep.team_id if rep is not None else lead.team_id, "owner_id": first_owner, "intent": lead.intent,
        "arrived_at": lead.created_at, "window_s": first_clock.window_s if first_clock else None,
        "first_response_at": first_response,
        "first_response_s": _business_seconds(session, book, lead, first_clock, first_response),
        "sla_met": (False if first_breach is not None and (first_response is None or first_breach <= first_response)
                    else None if first_response is None else True),
        "reminder_fired": any(0 < fraction < 1.0 for _row, _clock, fraction in ladder_steps),
        "manager_escalated": history.manager_told,
        "reassigned": any(row.action == "reassign" for row in decisions),
        "contacted": bool(states & WORKED) or bool(progress - {ProgressKind.DISQUALIFIED.value}),
        "qualified": bool(states & QUALIFIED),
        "disqualified": bool(states & DISQUALIFIED) or ProgressKind.DISQUALIFIED.value in progress,
        "booked": ProgressKind.MEETING_HELD.value in progress,
        "no_response": first_response is None,
        "closed_lost_due_to_delay": lead.state in LOST and first_breach is not None and not progress_after_breach,
        "recovered_after_escalation": progress_after_breach,
    }


def _due(row: AuditRow) -> datetime:
    """When a ladder step was due (the tick may have noticed it later)."""
    due = row.details.get("due_at")
    return datetime.fromisoformat(due) if isinstance(due, str) else row.at


def _first_owner(lead: Lead, events: list[LeadEvent], decisions: list[AuditRow]) -> str | None:
    """Who owned the lead first: the earliest record of an owner (a decision names the owner it saw,
    a CRM owner change the one before it); the engine's own reassignments change the shadow row
    without an event, so the current owner alone would credit the wrong rep."""
    seen = sorted([(e.at, 0, e.old) for e in events if e.kind == "owner_changed"]
                  + [(row.at, 1, row.owner_id) for row in decisions if row.owner_id is not None],
                  key=lambda item: (item[0], item[1]))
    return seen[0][2] if seen else lead.owner_id


def _business_seconds(session: Session, book: PolicyBook, lead: Lead, clock: Clock | None,
                      until: datetime | None) -> float | None:
    if until is None or lead.created_at is None:
        return None
    version = clock.policy_version if clock is not None else book.active(session)[0]
    calendar = book.calendar(version, book.get(session, version), clock.market if clock else lead.market)
    return max(0.0, calendar.elapsed(lead.created_at, until).total_seconds()) if until > lead.created_at else 0.0


def refresh(session: Session, book: PolicyBook, now: datetime, since: datetime | None = None,
            chunk: int = 500) -> int:
    """Rebuild the outcome rows of every lead that arrived at or after `since` (all leads if None)."""
    query = select(Lead.id).order_by(Lead.id)
    if since is not None:
        query = query.where(Lead.created_at >= since)
    lead_ids = list(session.scalars(query))
    for start in range(0, len(lead_ids), chunk):
        ids = lead_ids[start:start + chunk]
        leads = session.scalars(select(Lead).where(Lead.id.in_(ids)).order_by(Lead.id)).all()
        histories = load_histories(session, ids)
        existing = {row.lead_id: row for row in session.scalars(
            select(LeadOutcome).where(LeadOutcome.lead_id.in_(ids)))}
        for lead in leads:
            values = outcome_of(session, book, lead, histories[lead.id])
            row = existing.get(lead.id)
            if row is None:
                session.add(LeadOutcome(lead_id=lead.id, updated_at=now, **values))
                continue
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = now
        session.flush()
    return len(lead_ids)


def hit_rates(session: Session, by: Sequence[str] = GROUPS) -> list[tuple[tuple[Any, ...], int, int]]:
    """(group values, met, decided) per group; rate = met / decided. Leads whose first window still runs
    are not decided yet and count in neither."""
    unknown = set(by) - set(GROUPS)
    if unknown:
        raise ValueError(f"cannot group outcomes by {', '.join(sorted(unknown))}; use {', '.join(GROUPS)}")
    columns = [getattr(LeadOutcome, name) for name in by]
    met = func.sum(case((LeadOutcome.sla_met.is_(True), 1), else_=0)).cast(Integer)
    query = (select(*columns, met, func.count()).where(LeadOutcome.sla_met.is_not(None))
             .group_by(*columns).order_by(*columns))
    return [(tuple(row[: len(by)]), int(row[-2] or 0), int(row[-1])) for row in session.execute(query)]


def export(session: Session, fmt: str, since: datetime | None = None) -> Iterator[str]:
    """Outcome rows as CSV or a JSON array, by arrival then lead id (deterministic for the same history),
    with the lead's, the owner's and the team's names beside their ids."""
    query = (select(LeadOutcome, Lead.name, Team.name, Rep.name).join(Lead, Lead.id == LeadOutcome.lead_id)
             .outerjoin(Rep, Rep.id == LeadOutcome.owner_id).outerjoin(Team, Team.id == LeadOutcome.team_id)
             .order_by(LeadOutcome.arrived_at, LeadOutcome.lead_id))
    if since is not None:
        query = query.where(LeadOutcome.arrived_at >= since)
    rows = [{**{name: _plain(getattr(row, name)) for name in OUTCOME_FIELDS}, **dict(zip(NAMES, names, strict=True))}
            for row, *names in session.execute(query)]
    if fmt == "json":
        yield json.dumps(rows, indent=1) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    yield buffer.getvalue()


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
