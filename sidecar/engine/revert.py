"""Undo an automatic reassignment (seed 001 step 5: reassignment is reversible).

The team lead (or an admin) gives the lead back to its original owner. Both steps stay in the
audit, linked; the owner change back is conditional like every owner change; and the lead gets a
fresh clock instead of immediately re-entering the ladder.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.audit import Pattern, StepAction
from sidecar.domain import is_canonical
from sidecar.engine import clocks
from sidecar.engine.ownership import needs_owner, queue_ids
from sidecar.engine.patterns import first_response, keys
from sidecar.engine.patterns.shared import (
    EngineContext,
    change_owner,
    create_task,
    lead_context,
    record_step,
    refresh_team,
)
from sidecar.ports import TaskRequest
from sidecar.store.models import AuditRow, Lead, OutboxRow

REVERTED = "reassignment_reverted"  # the audit label; code finds reverts by action, not by this


class RevertError(Exception):
    """Nothing to revert, or it was reverted already; the message says which."""


def revert_reassignment(session: Session, ctx: EngineContext, crm: str, crm_id: str, actor: str,
                        reason: str, now: datetime) -> AuditRow:
    lead = session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()
    if lead is None:
        raise RevertError(f"no {crm} lead {crm_id} is known to the sidecar")
    # Whatever the admin named the step: the last decision that gave this lead to another rep.
    last = session.scalars(select(AuditRow).where(
        AuditRow.lead_id == lead.id, AuditRow.action == StepAction.REASSIGN.value,
        AuditRow.to_owner.is_not(None)).order_by(AuditRow.id.desc())).first()
    if last is None or last.step_key is None:
        raise RevertError(f"lead {crm_id} was never reassigned by the sidecar")
    already = session.scalars(select(AuditRow).where(
        AuditRow.action == StepAction.REVERT.value, AuditRow.step_key == keys.revert_key(last.id))).first()
    if already is not None:
        raise RevertError(f"that reassignment was already reverted by {already.actor}")
    original, given_to = str(last.details["from_owner"]), str(last.to_owner)
    change = session.scalars(select(OutboxRow).where(
        OutboxRow.idempotency_key == keys.effect_key(last.step_key, "owner"))).first()
    if change is not None and change.status in ("dead", "skipped"):
        raise RevertError(f"the reassignment to {given_to} never happened in the CRM ({change.last_error}); "
                          "nothing to revert")
    if lead.owner_id != given_to:
        raise RevertError(f"the lead is now owned by {lead.owner_id}, not {given_to}: someone changed it since; "
                          "change the owner in the CRM if needed")
    row = record_step(session, at=now, pattern=Pattern.REVERT, action=StepAction.REVERT, to_owner=original,
                      kind=REVERTED, lead=lead, rule_id=last.rule_id, policy_version=last.policy_version,
                      actor=actor, step_key=keys.revert_key(last.id),
                      details={"reverts_audit_id": last.id, "from_owner": given_to, "to_owner": original,
                               "reason": reason})
    back = None
    if change is not None and change.status == "pending":
        # Not written to the CRM yet: cancel it (and with it the new owner's task and messages).
        change.status, change.last_error, change.done_at = "skipped", "reverted before it was made", now
    else:
        back = change_owner(session, row, lead, lead_context(session, ctx, lead), original, now,
                            depends_on=change)
    lead.owner_id = original
    refresh_team(session, lead)
    # The fresh clock first: a task handed back is due at the end of the new window.
    _fresh_clock(session, ctx, lead, now)
    # The open task goes back with the lead (after the owner change back, if one is made). With
    # `on_reassign: close` it is closed instead, and the original owner, like any new owner in
    # that mode, gets a task of their own: the lead is theirs to work again.
    if not first_response.hand_over(session, ctx, lead, row, now, depends_on=back) \
            and not needs_owner(lead, queue_ids(session)):
        create_task(session, row, _task_back(session, ctx, lead, given_to, actor, reason, now), now,
                    depends_on=back)
    return row


def _task_back(session: Session, ctx: EngineContext, lead: Lead, given_to: str, actor: str, reason: str,
               now: datetime) -> TaskRequest:
    context = lead_context(session, ctx, lead)
    due, tz = first_response.due_for_new_owner(session, ctx, lead, now)
    body = (f"{lead.name} ({lead.company}) is yours again: {actor} reverted the SLA sidecar's reassignment "
            f"to {given_to}" + (f" ({reason})" if reason else "") + f". State: {lead.state}; source: "
            f"{lead.source or 'unknown'}, market: {lead.market or 'unknown'}, intent: {lead.intent or 'unclear'}."
            f"\n{context.record_url}")
    return TaskRequest(lead=context, owner_id=str(lead.owner_id), subject=f"Back to you: {lead.name} ({lead.company})",
                       body=body, due_at=due, priority="high", due_tz=tz)


def _fresh_clock(session: Session, ctx: EngineContext, lead: Lead, now: datetime) -> None:
    """A fresh window for the original owner, not an instant re-escalation; a paused clock stays paused."""
    # The SLA clock only: the stuck clock counts time in the state, which an owner change does not end.
    clock = clocks.open_clock_of(session, lead.id, clocks.SLA)
    if clock is not None and clock.status == "paused":
        clock.consumed_s, clock.steps_fired = 0.0, 0
        return
    if clock is not None:
        clocks.close(clock, now, "reverted")
    if is_canonical(lead.state):
        clocks.start_clock(session, ctx.book, lead, now, clocks.SLA)
