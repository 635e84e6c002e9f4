"""One lead's story as one list: CRM events, clocks, engine steps and their effects, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import review_queue
from sidecar.audit import StepAction
from sidecar.engine.clocks import SLA
from sidecar.engine.patterns import keys
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import AuditRow, Clock, Lead, LeadEvent, OutboxRow


@dataclass(frozen=True)
class Entry:
    at: datetime
    source: str  # crm | clock | step | effect
    what: str
    detail: str = ""
    rule_id: str = ""
    version: str = ""
    status: str = ""  # an effect's outbox status, a clock's status


@dataclass(frozen=True)
class Actions:
    """What may be done on this lead now (before roles): the reassignment to revert, the step to snooze."""

    revert_to: str | None  # the original owner a revert would give the lead back to
    snooze_rule: str | None  # the pending warning step a snooze would push back
    compliance_hold: bool = False  # held for compliance review: clear or reject it


def find_lead(session: Session, crm: str, crm_id: str) -> Lead | None:
    return session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()


def _events(session: Session, lead: Lead) -> list[Entry]:
    return [Entry(event.at, "crm", event.kind.replace("_", " "),
                  f"{event.old or ''} → {event.new or ''}" if event.old else (event.new or ""))
            for event in session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead.id))]


def _clocks(session: Session, lead: Lead) -> list[Entry]:
    entries = []
    for clock in session.scalars(select(Clock).where(Clock.lead_id == lead.id)):
        window = f"{clock.kind} clock for {clock.state}, window {clock.window_s // 60} business min"
        entries.append(Entry(clock.started_at, "clock", "clock started", window, clock.rule_id,
                             clock.policy_version, "" if clock.status == "closed" else clock.status))
        if clock.closed_at is not None:
            entries.append(Entry(clock.closed_at, "clock", "clock closed", clock.close_reason or "",
                                 clock.rule_id, clock.policy_version, "closed"))
    return entries


def _steps(session: Session, lead: Lead, names: dict[str, str]) -> list[Entry]:
    entries = []
    rows = list(session.scalars(select(AuditRow).where(AuditRow.lead_id == lead.id)))
    effects: dict[int, list[OutboxRow]] = {}
    for effect in session.scalars(select(OutboxRow).where(OutboxRow.audit_id.in_([row.id for row in rows]))):
        effects.setdefault(effect.audit_id or 0, []).append(effect)
    for row in rows:
        to = f"to {names.get(row.to_owner, row.to_owner)}" if row.to_owner else ""
        by = f"by {row.actor}" if row.actor != "system" else ""
        did = " · ".join(filter(None, [row.pattern, row.action, to, by]))
        entries.append(Entry(row.at, "step", row.kind.replace("_", " "), did, row.rule_id or "",
                             row.policy_version or ""))
        for effect in effects.get(row.id, []):
            outcome = effect.last_error if effect.status == "dead" else (effect.result or "")
            target = effect.recipient or effect.payload.get("persona") or ""
            entries.append(Entry(effect.done_at or effect.created_at, "effect",
                                 effect.action.replace("_", " ") + (f" → {target}" if target else ""),
                                 outcome or "", row.rule_id or "", row.policy_version or "", effect.status))
    return entries


def timeline(session: Session, lead: Lead, names: dict[str, str]) -> list[Entry]:
    """`names`: rep id -> name, so that owner changes read as people."""
    order = {"crm": 0, "clock": 1, "step": 2, "effect": 3}
    entries = _events(session, lead) + _clocks(session, lead) + _steps(session, lead, names)
    return sorted(entries, key=lambda entry: (entry.at, order[entry.source]))


def actions(session: Session, book: PolicyBook, lead: Lead) -> Actions:
    last = session.scalars(select(AuditRow).where(
        AuditRow.lead_id == lead.id, AuditRow.action == StepAction.REASSIGN.value,
        AuditRow.to_owner.is_not(None)).order_by(AuditRow.id.desc())).first()
    revert_to = None
    if last is not None and lead.owner_id == last.to_owner and session.scalars(select(AuditRow.id).where(
            AuditRow.step_key == keys.revert_key(last.id))).first() is None:
        revert_to = str(last.details.get("from_owner") or "") or None
    snooze_rule = None
    clock = sla_clock(session, lead)
    if clock is not None:
        ladder = book.get(session, clock.policy_version).ladder
        pending = ladder[clock.steps_fired] if clock.steps_fired < len(ladder) else None
        already = session.scalars(select(AuditRow.id).where(
            AuditRow.step_key == snooze_key(clock))).first() is not None
        if pending is not None and pending.at < 1.0 and pending.reassign is None and not already:
            snooze_rule = pending.id
    return Actions(revert_to, snooze_rule, review_queue.on_compliance_hold(session, lead.id))


def sla_clock(session: Session, lead: Lead) -> Clock | None:
    """The lead's running SLA clock, the one a snooze moves (its stuck clock follows other steps)."""
    return session.scalars(select(Clock).where(Clock.lead_id == lead.id, Clock.kind == SLA, Clock.status == "open",
                                               Clock.next_due_at.is_not(None))).one_or_none()


def snooze_key(clock: Clock) -> str:
    """A dashboard snooze of a clock's pending step, at most once per step."""
    return keys.effect_key(keys.snooze_key(keys.step_key(clock.id, clock.steps_fired)), "dashboard")
