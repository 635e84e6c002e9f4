"""Escalation patterns: one small module per pattern, sharing `shared` (audit row, effects) and
`keys` (every step and effect key).

Adding a pattern:
1. Write `sidecar/engine/patterns/<name>.py` with one handler. Clock-driven (the pattern runs on a
   business-time clock): `fire(session, ctx, clock, lead, now) -> AuditRow`, like `sla_ladder.fire_step`;
   start its clocks with `Clock.kind = "<name>"`. Event-driven (reacts to a CRM change):
   `on_applied(session, ctx, applied, now) -> None`.
2. Decide from the policy's typed fields, never from a `kind` string. Write the decision with
   `shared.record_step(pattern=Pattern.X, action=StepAction.Y, ...)` and its effects with
   `shared.notify / create_task / add_note / change_owner / to_queue`; build keys with `keys`.
3. Register it below: `register_clock("<name>", <name>.fire)` or `register_event("<name>", <name>.on_applied)`.
4. Remove its entries from `sidecar.policy.enforcement.NOT_ENFORCED`, so `policy show` and
   `sidecar check` stop calling its keys "not enforced yet".
"""

from __future__ import annotations

from sidecar.engine.patterns import churn, compliance, first_response, high_value, sla_ladder, stuck
from sidecar.engine.patterns.registry import (
    ClockHandler,
    EventHandler,
    clock_handler,
    on_applied,
    register_clock,
    register_event,
)

register_clock("sla", sla_ladder.fire_step)
register_clock("stuck", stuck.fire)
# Order matters: compliance first, so that a lead it has just held (clocks paused, review item open)
# is neither flagged high-value, nor tagged for churn, nor given a first-response task; high value
# before first response, so that a lead handed to a senior rep on arrival gets its task there.
register_event("compliance", compliance.on_applied)
register_event("high_value", high_value.on_applied)
register_event("churn", churn.on_applied)
register_event("first_response", first_response.on_applied)

__all__ = ["ClockHandler", "EventHandler", "clock_handler", "on_applied", "register_clock", "register_event"]
