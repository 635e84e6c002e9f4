"""One ladder step of one SLA clock -> its audit row and its outbox effects (seed 000 pattern 1).

Everything a step does comes from the policy's typed fields: which personas hear about it, whether
a breach note goes on the record, whether the lead is reassigned. The step's `kind` is only the
audit label. Idempotency keys derive from (clock, step, action, target), so re-deciding a step can
never produce a second effect.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import audit
from sidecar.audit import Pattern, StepAction
from sidecar.domain import Persona
from sidecar.engine import clocks
from sidecar.engine.patterns import first_response, keys
from sidecar.engine.patterns.shared import (
    EngineContext,
    Message,
    add_note,
    change_owner,
    create_task,
    is_high_value,
    lead_context,
    notify,
    ops_queue_of,
    record_step,
    refresh_team,
    to_queue,
)
from sidecar.engine.routing import choose_new_owner
from sidecar.policy.model import LadderStep, Policy
from sidecar.ports import LeadContext, TaskRequest
from sidecar.store.models import AuditRow, Clock, Lead, Rep


def fire_step(session: Session, ctx: EngineContext, clock: Clock, lead: Lead, now: datetime) -> AuditRow:
    """Decide the clock's next step (due at `clock.next_due_at`) and advance the clock."""
    policy = ctx.book.get(session, clock.policy_version)
    index, due = clock.steps_fired, clock.next_due_at
    assert due is not None
    step = policy.ladder_of(clock.ladder)[index]
    refresh_team(session, lead)
    breach_at = clocks.breach_at(clock, ctx.book, session)
    details: dict[str, object] = {
        "clock_id": clock.id, "window_rule_id": clock.rule_id, "state": clock.state, "fraction": step.at,
        "due_at": due.isoformat(), "late": now - due > ctx.late_after,
    }
    if clock.window_factor is not None:  # a high-value lead's tightened window: what it was, and by how much
        details.update(base_window_s=clock.base_window_s, window_factor=clock.window_factor)
    choice = None
    if step.reassign:
        # High-value leads go to the most senior available rep (seed 000 pattern 3) when the policy says so.
        senior = is_high_value(policy, lead) and policy.high_value is not None and policy.high_value.reassign_to_senior
        strategy = policy.reassignment.high_value_strategy if senior else None
        choice = choose_new_owner(session, ctx.book, clock.policy_version, policy, lead, now, strategy)
        details.update(from_owner=lead.owner_id, to_owner=choice.rep.id if choice.rep else None,
                       strategy=choice.strategy, reason=choice.reason, excluded=choice.excluded)
    action, to_owner = _typed_action(session, step, lead, choice.rep if choice else None, choice is not None)
    row = record_step(session, at=now, pattern=Pattern.SLA, action=action, to_owner=to_owner, kind=step.kind,
                      lead=lead, rule_id=step.id, policy_version=clock.policy_version,
                      elapsed_business_s=clocks.used_seconds(clock, ctx.book, session, now),
                      window_s=clock.window_s, step_key=keys.step_key(clock.id, index), details=details)
    _record_ignored_warnings(session, clock, policy, step, lead, row, now)
    context = lead_context(session, ctx, lead)
    change = queued = None
    personas = list(step.notify)
    extra: dict[str, str] = {"reason": choice.reason} if choice and choice.reason else {}
    if choice is not None and choice.rep is not None:
        change = change_owner(session, row, lead, context, choice.rep.id, now)
    elif choice is not None:
        # Nobody in the team can take it: park it in the team's queue, and the manager hears why.
        queued = to_queue(session, row, lead, context, now)
        extra["queued"] = "yes" if queued is not None else "no"
        if Persona.MANAGER not in personas and Persona.MANAGER in policy.notifications:
            personas.append(Persona.MANAGER)
    urgent = step.at >= 1.0 or step.reassign is not None
    message = Message(kind=step.kind, rule_id=step.id, policy_version=clock.policy_version, due_at=breach_at,
                      window_s=clock.window_s, urgent=urgent, snoozable=not urgent,
                      new_owner=choice.rep if choice else None, extra=extra)
    for persona in personas:
        # Messages about a reassignment go out only once the CRM has taken the owner change.
        notify(session, ctx, policy, row, persona, lead, context, message, now, depends_on=change)
    if step.crm_note:
        add_note(session, row, context, _breach_note(lead, clock, step, row, breach_at), now)
    clock.steps_fired += 1
    if choice is not None and choice.rep is not None:
        # The new owner gets a fresh window of their own; the old clock ends here. The shadow row takes
        # the new owner at once so that routing counts this lead toward their capacity; if the CRM
        # refuses the change, the next poll brings the true owner back.
        clocks.close(clock, now, "reassigned")
        lead.owner_id = choice.rep.id
        # Started first: a task that follows the lead is due at the end of this new window.
        clocks.start_clock(session, ctx.book, lead, now, clocks.SLA)
        # One task per lead: the open one follows the lead; only if it was closed (or there was
        # none) does the new owner get a follow-up task of their own.
        if not first_response.hand_over(session, ctx, lead, row, now, depends_on=change,
                                         restarted=True):
            zone = first_response.market_zone(session, ctx, lead)
            create_task(session, row, _task_for_new_owner(context, choice.rep, lead, step, now, zone), now,
                        depends_on=change)
    elif queued is not None:
        clocks.close(clock, now, "queued")  # a queue is not a person: ops review takes it from here
        lead.owner_id = queued.payload["to_owner_id"]
        first_response.hand_over(session, ctx, lead, row, now, depends_on=queued)  # a queue works no task
    else:
        clocks.plan(clock, ctx.book, session)
    return row


def _typed_action(session: Session, step: LadderStep, lead: Lead, new_owner: Rep | None,
                  reassigning: bool) -> tuple[StepAction | None, str | None]:
    """What this step does, from its typed fields (never its kind): (action, new owner id)."""
    if new_owner is not None:
        return StepAction.REASSIGN, new_owner.id
    queue = ops_queue_of(session, lead) if reassigning else None
    if queue is not None:
        return StepAction.QUEUE, queue
    if step.notify or reassigning:  # nobody could take it: the manager is told instead
        return StepAction.NOTIFY, None
    return (StepAction.NOTE, None) if step.crm_note else (None, None)


def _record_ignored_warnings(session: Session, clock: Clock, policy: Policy, step: LadderStep, lead: Lead,
                             row: AuditRow, now: datetime) -> None:
    """At the breach, every earlier warning of this clock went unanswered (progress would have reset
    the clock): audit each as ignored, linked to the warning, for quarterly calibration."""
    if step.at < 1.0:
        return
    for index, earlier in enumerate(policy.ladder_of(clock.ladder)[: clock.steps_fired]):
        if earlier.at >= 1.0 or not earlier.notify:
            continue
        warning = session.scalars(select(AuditRow).where(AuditRow.step_key == keys.step_key(clock.id, index))).first()
        # An "I'm on it" click without progress is still an unanswered warning; calibration can tell them apart.
        acked = session.scalars(select(AuditRow.id).where(
            AuditRow.step_key.startswith(keys.ack_prefix(clock.id, index)))).first() is not None
        audit.record(session, at=now, kind="notification_ignored", lead=lead, rule_id=earlier.id,
                     policy_version=clock.policy_version, step_key=keys.step_key(clock.id, index, "ignored"),
                     pattern=Pattern.SLA,
                     details={"warning_audit_id": warning.id if warning else None, "breach_audit_id": row.id,
                              "clock_id": clock.id, "notified": [p.value for p in earlier.notify],
                              "acknowledged": acked})


def _task_for_new_owner(context: LeadContext, rep: Rep, lead: Lead, step: LadderStep,
                        now: datetime, zone: str) -> TaskRequest:
    body = (f"{lead.name} ({lead.company}) was reassigned to you by the SLA sidecar after no progress "
            f"in {lead.state} (rule {step.id}). Source: {lead.source or 'unknown'}, market: "
            f"{lead.market or 'unknown'}, intent: {lead.intent or 'unclear'}.\n{context.record_url}")
    return TaskRequest(lead=context, owner_id=rep.id, subject=f"Follow up now: {lead.name} ({lead.company})",
                       body=body, due_at=now + timedelta(hours=1), priority="high", due_tz=zone)


def _breach_note(lead: Lead, clock: Clock, step: LadderStep, row: AuditRow, breach_at: datetime) -> str:
    return (f"SLA breached: no progress on this {clock.state} lead within {clock.window_s // 60} business "
            f"minutes (window rule {clock.rule_id}; step {step.id}, policy {clock.policy_version}). "
            f"Deadline was {breach_at:%Y-%m-%d %H:%M} UTC; owner at the time: {lead.owner_id or 'none'}. "
            f"Audit #{row.id}.")
