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
from sidecar.engine import clocks
from sidecar.engine.ladder import EngineContext, lead_context
from sidecar.ports import OwnerChange
from sidecar.store.models import AuditRow, Lead

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
    original = str(last.details["from_owner"])
    row = audit.record(session, at=now, kind=REVERTED, lead=lead, rule_id=last.rule_id,
                       policy_version=last.policy_version, actor=actor, step_key=f"revert:{last.id}",
                       details={"reverts_audit_id": last.id, "from_owner": last.details["to_owner"],
                                "to_owner": original, "reason": reason})
    outbox.enqueue(session, key=f"revert:{last.id}:owner", now=now, audit_id=row.id, request=OwnerChange(
        lead=lead_context(session, ctx, lead), from_owner_id=lead.owner_id, to_owner_id=original,
        seen_modified_at=lead.crm_modified_at))
    clock = clocks.open_clock_of(session, lead.id)
    if clock is not None:
        clocks.close(clock, now, "reverted")
    clocks.start_clock(session, ctx.book, lead, now)  # a fresh window, not an instant re-escalation
    return row
