"""Stuck lead (seed 000 pattern 2, seed 001): same state for a multiple of its window.

Different from the SLA ladder: the SLA clock restarts on every progress activity; the stuck clock
(`Clock.kind == "stuck"`) starts when the lead enters a state, counts business time in that state
against the same window rule, and ends only when the lead leaves the state. Pause states (ON_HOLD,
COMPLIANCE_HOLD) pause it like the SLA clock, so a lead on hold is never flagged (seed 000's
failure mode). At each policy multiple (2x / 3x / 4x by default) one step fires: notify its
personas; a step with `queue: ops_review` also opens an item in the operations review queue (one per
lead and state while it stays open). Audit: the step's kind (`stuck_lead`), its level and the
elapsed business time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from sidecar import review_queue
from sidecar.audit import Pattern, StepAction
from sidecar.engine import clocks
from sidecar.engine.patterns import keys
from sidecar.engine.patterns.shared import EngineContext, Message, lead_context, notify, record_step, refresh_team
from sidecar.store.models import AuditRow, Clock, Lead


def fire(session: Session, ctx: EngineContext, clock: Clock, lead: Lead, now: datetime) -> AuditRow:
    """Decide the stuck clock's next step (due at `clock.next_due_at`) and advance the clock."""
    policy = ctx.book.get(session, clock.policy_version)
    index, due = clock.steps_fired, clock.next_due_at
    assert due is not None
    step = sorted(policy.stuck, key=lambda s: s.multiple)[index]
    refresh_team(session, lead)
    elapsed = clocks.used_seconds(clock, ctx.book, session, now)
    details: dict[str, object] = {
        "clock_id": clock.id, "window_rule_id": clock.rule_id, "state": clock.state, "level": index + 1,
        "multiple": step.multiple, "state_since": clock.started_at.isoformat(), "due_at": due.isoformat(),
        "late": now - due > ctx.late_after,
    }
    row = record_step(session, at=now, pattern=Pattern.STUCK,
                      action=StepAction.REVIEW if step.queue else StepAction.NOTIFY if step.notify else None,
                      kind=step.kind, lead=lead, rule_id=step.id, policy_version=clock.policy_version,
                      elapsed_business_s=elapsed, window_s=clock.window_s,
                      step_key=keys.step_key(clock.id, index), details=details)
    if step.queue:
        item, created = review_queue.open_item(
            session, queue=review_queue.OPS_REVIEW, lead=lead, reason=f"stuck in {clock.state}",
            pattern=Pattern.STUCK.value, rule_id=step.id, policy_version=clock.policy_version,
            details={"multiple": step.multiple, "elapsed_business_s": round(elapsed), "audit_id": row.id},
            now=now)
        row.details = {**row.details, "review_item_id": item.id, "review_item_new": created}
    context = lead_context(session, ctx, lead)
    reason = (f"No move out of {clock.state} for {step.multiple:g}x its {clock.window_s // 60}-minute window "
              f"(rule {clock.rule_id}); update the lead or move it on.")
    message = Message(kind=step.kind, rule_id=step.id, policy_version=clock.policy_version, due_at=due,
                      window_s=clock.window_s, urgent=index > 0,  # the owner's first nudge may wait for hours
                      extra={"reason": reason, "level": str(index + 1), "multiple": f"{step.multiple:g}"})
    for persona in step.notify:
        notify(session, ctx, policy, row, persona, lead, context, message, now)
    clock.steps_fired += 1
    clocks.plan(clock, ctx.book, session)  # after the last level nothing is due; leaving the state ends it
    return row
