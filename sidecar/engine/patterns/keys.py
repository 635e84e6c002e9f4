"""Every step key and effect key the engine writes, in one place.

Audit rows are unique by `step_key` and outbox rows by idempotency key, so a re-run of a decision
is a no-op. These strings are stored: changing a shape here would make old rows look undecided and
fire their effects twice, so new patterns add shapes and never alter existing ones.
"""

from __future__ import annotations

import re
from datetime import datetime

from sidecar.ports import FIRST_RESPONSE_TASK_PREFIX

_STEP = re.compile(r"clock:(\d+):step:(\d+)")


def step_key(clock_id: int, index: int, *effect: str) -> str:
    """Step `index` of clock `clock_id` ("clock:7:step:2"); with `effect` parts, one of its effects:
    ("owner",), ("task", rep_id), ("notify", persona), ("note",), ("queue",), ("ignored",)."""
    return ":".join((f"clock:{clock_id}:step:{index}", *effect))


def effect_key(decision_key: str, *effect: str) -> str:
    """An effect of any decision, named after the decision's own key ("<key>:owner", "<key>:task:<rep>")."""
    return ":".join((decision_key, *effect))


def parse_step_key(key: str) -> tuple[int, int] | None:
    """(clock id, step index) of a ladder step's key; None for any other key."""
    match = _STEP.fullmatch(key)
    return (int(match[1]), int(match[2])) if match else None


def ack_key(notification_key: str, rep_id: str) -> str:
    """One "I'm on it" per (notification, person); the notification key of a step starts with its step key."""
    return f"ack:{notification_key}:{rep_id}"


def ack_prefix(clock_id: int, index: int) -> str:
    """Every ack of any notification of one step starts with this."""
    return f"ack:{step_key(clock_id, index)}:"


def snooze_key(step: str) -> str:
    return f"snooze:{step}"


def revert_key(audit_id: int) -> str:
    """The revert of the reassignment audited as `audit_id` (at most one)."""
    return f"revert:{audit_id}"


def assignment_key(lead_id: int, crm_modified_at: datetime) -> str:
    """Tied to the CRM state the decision saw: the same snapshot is decided once, a later one again."""
    return f"lead:{lead_id}:assign@{crm_modified_at.isoformat()}"


def compliance_hold_key(lead_id: int, criteria: list[str]) -> str:
    """One hold per lead and set of matched criteria: the same flags seen again (every later snapshot,
    or after a clear) decide nothing; a new criterion holds the lead again."""
    return f"lead:{lead_id}:compliance:{'+'.join(sorted(criteria))}"[:200]


def review_decision_key(item_id: int) -> str:
    """The one decision (clear or reject) that closes review item `item_id`."""
    return f"review:{item_id}:decision"


def review_resolved_key(item_id: int) -> str:
    """An ops-review item closed by hand (`sidecar queue resolve`)."""
    return f"review:{item_id}:resolved"


def review_surfaced_key(item_id: int, day: str) -> str:
    """An aging review item shown to its queue's channel again, at most once per UTC day."""
    return f"review:{item_id}:surfaced@{day}"


def first_response_key(lead_id: int) -> str:
    """The first-response decision of a lead: one per lead, for the clock it arrived with. Its task's
    key (`effect_key(this, "task", owner)`) starts with `ports.FIRST_RESPONSE_TASK_PREFIX`, which
    is how connectors recognise the task when it is completed."""
    return f"{FIRST_RESPONSE_TASK_PREFIX}lead:{lead_id}"


def task_update_key(decision_key: str) -> str:
    """The re-owning or closing of a lead's first-response task by a decision that moved the lead."""
    return effect_key(decision_key, "task-update")
def high_value_key(lead_id: int, crm_modified_at: datetime) -> str:
    """One high-value flag per crossing: tied to the CRM state that crossed (a replay is the same crossing)."""
    return f"lead:{lead_id}:high_value@{crm_modified_at.isoformat()}"


def high_value_rearm_key(lead_id: int, crm_modified_at: datetime) -> str:
    return f"lead:{lead_id}:high_value_rearmed@{crm_modified_at.isoformat()}"


def signal_key(signal_id: str) -> str:
    """The churn-risk decision for one signal (API or CRM flag): a repeated signal id is a no-op."""
    return f"signal:{signal_id}"


def churn_pause_key(hold_id: int, lead_id: int) -> str:
    """One "outreach paused" decision per (hold, lead)."""
    return f"churn_hold:{hold_id}:pause:{lead_id}"


def churn_release_key(hold_id: int) -> str:
    return f"churn_hold:{hold_id}:released"
