"""`ignored_policy_keys` and `policy show`'s "(not enforced yet)" come from one table."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sidecar.policy import enforcement, validate_policy
from sidecar.policy.rules import NOT_YET, rule_lines
from tests.conftest import EXAMPLE_POLICY


def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_POLICY.read_text())
    return data


def test_the_example_policy_names_each_ignored_key_by_its_yaml_path() -> None:
    keys = enforcement.ignored_policy_keys(validate_policy(raw(), "p.yaml"))
    assert not [k for k in keys if k.startswith(("churn", "high_value"))]  # enforced by their patterns
    assert [k for k in keys if k.startswith("stuck[2]")] == ["stuck[2].multiple", "stuck[2].notify", "stuck[2].queue"]
    assert "stuck[0].queue" not in keys  # not set: nothing is ignored
    # Honoured by the SLA ladder's reassignment, so never reported.
    assert not {"high_value.reassign_to_senior", "high_value.min_score", "high_value.tiers"} & set(keys)


def test_absent_sections_and_defaults_are_not_reported() -> None:
    data = raw()
    for section in ("stuck", "compliance", "churn"):
        data.pop(section, None)
    data["high_value"] = {"min_score": 80, "reassign_to_senior": True}  # window_factor 1.0, notify []
    assert enforcement.ignored_policy_keys(validate_policy(data, "p.yaml")) == []


def test_a_pattern_that_becomes_enforced_drops_its_markers_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = validate_policy(raw(), "p.yaml")
    marked = {line.section for line in rule_lines(policy) if line.purpose.endswith(NOT_YET)}
    assert marked == {"stuck", "compliance"}
    monkeypatch.delitem(enforcement.NOT_ENFORCED, "stuck")
    assert not any(k.startswith("stuck") for k in enforcement.ignored_policy_keys(policy))
    assert {line.section for line in rule_lines(policy) if line.purpose.endswith(NOT_YET)} == marked - {"stuck"}
