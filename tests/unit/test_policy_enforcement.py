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
    # Every section has its pattern now (stuck, compliance, high value, churn): nothing is reported.
    assert keys == []
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
    assert marked == set()  # every section of the example policy is enforced
    # A section listed as not enforced is marked in `policy show` and reported by `sidecar check`,
    # and both stop once it is dropped from the table (as a pattern that starts acting on it does).
    monkeypatch.setitem(enforcement.NOT_ENFORCED, "churn", ("flags", "notify", "pause_outreach"))
    assert [k for k in enforcement.ignored_policy_keys(policy) if k.startswith("churn")] == [
        "churn.flags", "churn.notify", "churn.pause_outreach"]
    assert {line.section for line in rule_lines(policy) if line.purpose.endswith(NOT_YET)} == {"churn"}
    monkeypatch.delitem(enforcement.NOT_ENFORCED, "churn")
    assert not any(k.startswith("churn") for k in enforcement.ignored_policy_keys(policy))
    assert {line.section for line in rule_lines(policy) if line.purpose.endswith(NOT_YET)} == marked


def test_policy_show_describes_stuck_and_compliance_as_enforced() -> None:
    lines = {line.id: line for line in rule_lines(validate_policy(raw(), "p.yaml"))}
    assert not lines["stuck.review"].purpose.endswith(NOT_YET)
    assert "4x its window" in lines["stuck.review"].purpose and "ops_review" in lines["stuck.review"].purpose
    assert not lines["compliance.hold"].purpose.endswith(NOT_YET)
    assert "DACH: DE, AT, CH" in lines["compliance.hold"].purpose
