"""Undo an automatic reassignment (seed 001 step 5: reassignment is reversible).

The team lead (or an admin) gives the lead back to its original owner. Both steps stay in the
audit, linked; the owner change back is conditional like every owner change; and the lead gets a
fresh clock instead of immediately re-entering the ladder.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import audit, outbox
from sidecar.domain import is_canonical
from sidecar.engine import clocks
from sidecar.engine.patterns.shared import EngineContext, lead_context, refresh_team
from sidecar.ports import OwnerChange
from sidecar.store.models import AuditRow, Lead, OutboxRow

REASSIGNED = "sla_breach_auto_reassign"
REVERTED = "reassignment_reverted"


class RevertError(Exception):
    """Nothing to revert, or it was reverted already; the message says which."""


def revert_reassignment(session: Session, ctx: EngineContext, crm: str, crm_id: str, actor: str,
                        reason: str, now: datetime) -> AuditRow:
    lead = session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()
    if lead is None:
        raise RevertError(f"no {crm} lead {crm_id} is known to the sidecar")
    last = session.scalars(select(AuditRow).where(
        AuditRow.lead_id == lead.id, AuditRow.kind == REASSIGNED).order_by(AuditRow.id.desc())).first()
    if last is None or not last.details.get("to_owner"):
        raise RevertError(f"lead {crm_id} was never reassigned by the sidecar")
    already = session.scalars(select(AuditRow).where(
        AuditRow.kind == REVERTED, AuditRow.step_key == f"revert:{last.id}")).first()
    if already is not None:
        raise RevertError(f"that reassignment was already reverted by {already.actor}")
    original, given_to = str(last.details["from_owner"]), str(last.details["to_owner"])
    change = session.scalars(select(OutboxRow).where(OutboxRow.idempotency_key == f"{last.step_key}:owner")).first()
    if change is not None and change.status in ("dead", "skipped"):
        raise RevertError(f"the reassignment to {given_to} never happened in the CRM ({change.last_error}); "
                          "nothing to revert")
    if lead.owner_id != given_to:
        raise RevertError(f"the lead is now owned by {lead.owner_id}, not {given_to}: someone changed it since; "
                          "change the owner in the CRM if needed")
    row = audit.record(session, at=now, kind=REVERTED, lead=lead, rule_id=last.rule_id,
                       policy_version=last.policy_version, actor=actor, step_key=f"revert:{last.id}",
                       details={"reverts_audit_id": last.id, "from_owner": given_to, "to_owner": original,
                                "reason": reason})
    if change is not None and change.status == "pending":
        # Not written to the CRM yet: cancel it (and with it the new owner's task and messages).
        change.status, change.last_error, change.done_at = "skipped", "reverted before it was made", now
    else:
        outbox.enqueue(session, key=f"revert:{last.id}:owner", now=now, audit_id=row.id, depends_on=change,
                       request=OwnerChange(lead=lead_context(session, ctx, lead), from_owner_id=given_to,
                                           to_owner_id=original, seen_modified_at=lead.crm_modified_at))
    lead.owner_id = original
    refresh_team(session, lead)
    _fresh_clock(session, ctx, lead, now)
    return row


def _fresh_clock(session: Session, ctx: EngineContext, lead: Lead, now: datetime) -> None:
    """A fresh window for the original owner, not an instant re-escalation; a paused clock stays paused."""
    clock = clocks.open_clock_of(session, lead.id)
    if clock is not None and clock.status == "paused":
        clock.consumed_s, clock.steps_fired = 0.0, 0
        return
    if clock is not None:
        clocks.close(clock, now, "reverted")
    if is_canonical(lead.state):
        clocks.start_clock(session, ctx.book, lead, now)
