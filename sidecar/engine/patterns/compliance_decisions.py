"""A compliance officer's decision on a held lead, and the daily re-surfacing of aging holds.

Clear: the lead goes back to the status the policy maps to NEW, its clocks restart with a FULL
window (not resumed: the time before the hold is forgiven), it is routed normally (the owner keeps
it; an unowned lead gets its initial assignment), the owner gets the first-response task the hold
kept back (if the lead never had one) and is told. Reject: the status mapped
to DISQUALIFIED_COMPLIANCE with the reason (in the CRM's reason field when the connector has one,
and always as a note on the record); its clocks close. Both are audited with the deciding user and
the time the item spent in review.

Status writes and "don't clobber": the clear's write names the hold status it expects to replace,
so a status a person set while the lead was held stands (nothing to undo). The reject's write does
not: compliance's rejection wins over whatever a rep set. Both wait for the hold's own write if it
has not gone out yet, so they can never land before it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import outbox, review_queue
from sidecar.audit import Pattern, StepAction
from sidecar.domain import LeadState, Persona
from sidecar.engine import clocks
from sidecar.engine.assignment import assign_on_arrival
from sidecar.engine.ownership import needs_owner, queue_ids
from sidecar.engine.patterns import churn, first_response, keys
from sidecar.engine.patterns.compliance import crm_status_for, hold_status_update
from sidecar.engine.patterns.shared import EngineContext, Message, add_note, lead_context, notify, record_step
from sidecar.policy.markets import duration_seconds
from sidecar.ports import LeadUpdate
from sidecar.store.models import AuditRow, Lead, ReviewItem

CLEARED, REJECTED, AGING = "compliance_cleared", "compliance_rejected", "compliance_review_aging"
DECISIONS = ("clear", "reject")
RESURFACE_EVERY = timedelta(days=1)


class ComplianceError(Exception):
    """Unknown lead, not on hold, or a decision without a reason; the message says which."""


def decide(session: Session, ctx: EngineContext, crm: str, crm_id: str, decision: str, by: str, reason: str,
           now: datetime) -> AuditRow:
    if decision not in DECISIONS:
        raise ComplianceError(f"decision must be clear or reject, not {decision!r}")
    if not reason.strip():
        raise ComplianceError("give the reason for the decision (--reason \"...\"); it is kept in the audit")
    lead = session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()
    if lead is None:
        raise ComplianceError(f"no {crm} lead {crm_id} is known to the sidecar")
    item = review_queue.open_item_of(session, review_queue.COMPLIANCE, lead.id)
    if item is None:
        raise ComplianceError(f"{crm} lead {crm_id} is not on compliance hold; nothing to decide")
    version, policy = ctx.book.active(session)
    target = LeadState.NEW if decision == "clear" else LeadState.DISQUALIFIED_COMPLIANCE
    hold_status = crm_status_for(policy, lead.crm, LeadState.COMPLIANCE_HOLD)
    status = crm_status_for(policy, lead.crm, target)
    in_review = (now - item.opened_at).total_seconds()
    row = record_step(session, at=now, pattern=Pattern.COMPLIANCE, action=StepAction.UPDATE,
                      kind=CLEARED if decision == "clear" else REJECTED, lead=lead, rule_id=item.rule_id,
                      policy_version=version, actor=by, step_key=keys.review_decision_key(item.id),
                      details={"decision": decision, "reason": reason, "review_item_id": item.id,
                               "criteria": item.details.get("criteria", []), "time_in_review_s": round(in_review),
                               "crm_status": status, "held_since": item.opened_at.isoformat()})
    review_queue.close(item, by, f"{'cleared' if decision == 'clear' else 'rejected'}: {reason}", now)
    for kind in clocks.KINDS:
        clock = clocks.open_clock_of(session, lead.id, kind)
        if clock is not None:
            clocks.close(clock, now, f"compliance_{decision}")
    lead.state, lead.state_entered_at = target.value, now
    context = lead_context(session, ctx, lead)
    pending_hold = hold_status_update(session, item.details.get("audit_id"))
    if status is not None:
        update = LeadUpdate(lead=context, crm_status=status, reason=None if decision == "clear" else reason,
                            expect_status=hold_status if decision == "clear" else None)
        outbox.enqueue(session, key=keys.effect_key(row.step_key or "", "status"), now=now, audit_id=row.id,
                       request=update, depends_on=pending_hold)
    if decision == "reject":
        add_note(session, row, context, f"Disqualified by compliance ({by}): {reason}", now)
        return row
    for kind in clocks.KINDS:  # a full window from the clear, not what was left before the hold
        clocks.start_clock(session, ctx.book, lead, now, kind)
    churn.pause_if_held(session, ctx, lead, now)  # its account may be waiting for a retention touchpoint
    if needs_owner(lead, queue_ids(session)) and policy.assignment.enabled:
        assigned = assign_on_arrival(session, ctx, lead, now)
        row.details = {**row.details, "assigned_to": assigned.to_owner if assigned is not None else None}
        context = lead_context(session, ctx, lead)
    # The hold kept the first-response task back (a rep must not work a held lead): the owner gets it
    # now, due when the fresh window runs out. Once per lead: a lead tasked before its hold keeps that one.
    first_response.create_for(session, ctx, lead, now)
    if lead.owner_id and not needs_owner(lead, queue_ids(session)) and Persona.OWNER in policy.notifications:
        sla = clocks.open_clock_of(session, lead.id, clocks.SLA)
        due = clocks.breach_at(sla, ctx.book, session) if sla is not None else now
        message = Message(kind=CLEARED, rule_id=item.rule_id or "compliance", policy_version=version, due_at=due,
                          window_s=sla.window_s if sla is not None else 0, urgent=True,
                          extra={"reason": f"Compliance cleared this lead ({reason}); you can work it now. "
                                           "Its SLA window starts again from now."})
        notify(session, ctx, policy, row, Persona.OWNER, lead, context, message, now)
    return row


def resurface(session: Session, ctx: EngineContext, now: datetime) -> int:
    """Show compliance items waiting longer than `compliance.resurface_after` (business time of the
    lead's market) to the compliance channel again, at most once a day each. Returns how many."""
    version, policy = ctx.book.active(session)
    rule = policy.compliance
    if rule is None or Persona.COMPLIANCE not in policy.notifications:
        return 0
    shown = 0
    for item in review_queue.items(session, review_queue.COMPLIANCE):
        lead = session.get(Lead, item.lead_id)
        assert lead is not None
        calendar = ctx.book.calendar(version, policy, lead.market)
        waited = calendar.elapsed(item.opened_at, now).total_seconds()
        if waited < duration_seconds(rule.resurface_after, ctx.book.business_day(policy, lead.market)):
            continue
        if item.last_surfaced_at is not None and now - item.last_surfaced_at < RESURFACE_EVERY:
            continue
        if _surface(session, ctx, version, item, lead, waited, now):
            shown += 1
    return shown


def _surface(session: Session, ctx: EngineContext, version: str, item: ReviewItem, lead: Lead, waited: float,
             now: datetime) -> bool:
    policy = ctx.book.get(session, version)
    key = keys.review_surfaced_key(item.id, f"{now:%Y-%m-%d}")
    if session.scalars(select(AuditRow.id).where(AuditRow.step_key == key)).first() is not None:
        return False
    row = record_step(session, at=now, pattern=Pattern.COMPLIANCE, action=StepAction.NOTIFY, kind=AGING, lead=lead,
                      rule_id=item.rule_id, policy_version=version, step_key=key, elapsed_business_s=waited,
                      details={"review_item_id": item.id, "opened_at": item.opened_at.isoformat(),
                               "time_in_review_s": round((now - item.opened_at).total_seconds()),
                               "criteria": item.details.get("criteria", [])})
    item.last_surfaced_at = now
    days = (now - item.opened_at).total_seconds() / 86400
    criteria = ", ".join(item.details.get("criteria", []))
    text = (f"Waiting for a compliance decision for {days:.1f} days (matched: {criteria}; item #{item.id}). "
            f"Decide with `sidecar compliance clear|reject {lead.crm_id} --crm {lead.crm}`.")
    message = Message(kind=AGING, rule_id=item.rule_id or "compliance", policy_version=version, due_at=now,
                      window_s=0, urgent=True, extra={"reason": text})
    notify(session, ctx, policy, row, Persona.COMPLIANCE, lead, lead_context(session, ctx, lead), message, now)
    return True
