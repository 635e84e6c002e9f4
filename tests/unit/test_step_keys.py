"""Step and effect keys are stored: their shapes must never change."""

from __future__ import annotations

from datetime import UTC, datetime

from sidecar.engine.patterns import keys


def test_key_shapes_stay_what_stored_rows_hold() -> None:
    step = keys.step_key(7, 2)
    assert step == "clock:7:step:2"
    assert keys.step_key(7, 2, "owner") == keys.effect_key(step, "owner") == "clock:7:step:2:owner"
    assert keys.step_key(7, 2, "task", "r2") == "clock:7:step:2:task:r2"
    assert keys.step_key(7, 2, "notify", "manager") == "clock:7:step:2:notify:manager"
    assert keys.step_key(7, 0, "ignored") == "clock:7:step:0:ignored"
    assert keys.revert_key(41) == "revert:41" and keys.effect_key(keys.revert_key(41), "owner") == "revert:41:owner"
    assert keys.ack_key("clock:7:step:0:notify:owner", "r1") == "ack:clock:7:step:0:notify:owner:r1"
    assert keys.ack_key("clock:7:step:0:notify:owner", "r1").startswith(keys.ack_prefix(7, 0))
    assert keys.snooze_key(step) == "snooze:clock:7:step:2"
    at = datetime(2026, 11, 24, 13, tzinfo=UTC)
    assert keys.assignment_key(5, at) == "lead:5:assign@2026-11-24T13:00:00+00:00"


def test_only_ladder_step_keys_parse() -> None:
    assert keys.parse_step_key("clock:12:step:3") == (12, 3)
    assert keys.parse_step_key("clock:12:step:3:notify:owner") is None
    assert keys.parse_step_key("revert:12") is None
