from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sidecar.domain import Intent, LeadState
from sidecar.policy import PolicyError, load_policy, validate_policy
from sidecar.policy.diff import diff_policies
from sidecar.policy.markets import duration_seconds
from sidecar.policy.rules import rule_lines
from sidecar.policy.version import version_of
from tests.conftest import EXAMPLE_POLICY


def example_raw() -> dict:
    return yaml.safe_load(EXAMPLE_POLICY.read_text())


def test_example_policy_loads_and_every_rule_has_a_purpose() -> None:
    policy = load_policy(EXAMPLE_POLICY)
    lines = rule_lines(policy)
    assert len({line.id for line in lines}) == len(lines)
    assert all(line.purpose for line in lines)
    assert [step.at for step in policy.ladder] == [0.8, 1.0, 1.5]
    assert [step.kind for step in policy.ladder] == ["sla_breach_imminent", "sla_breach",
                                                     "sla_breach_auto_reassign"]


def test_most_specific_window_wins_and_ties_go_to_the_earlier_rule() -> None:
    policy = load_policy(EXAMPLE_POLICY)
    assert policy.window_for("IN", "web_form", LeadState.NEW, Intent.HIGH).id == "new.in.high"
    assert policy.window_for("DACH", "cold_list", LeadState.NEW, Intent.LOW).id == "new.cold_list"
    assert policy.window_for("DACH", "webinar", LeadState.NEW, Intent.MID).id == "new.default"
    # source and intent both name one key: the earlier rule in the file wins
    assert policy.window_for("US-East", "paid_social", LeadState.NEW, Intent.HIGH).id == "new.high_intent"
    assert policy.window_for("US-East", "webinar", LeadState.PROPOSAL, None) is None


def test_durations_in_business_seconds() -> None:
    from datetime import timedelta

    day = timedelta(hours=8)
    assert duration_seconds("45m", day) == 2700
    assert duration_seconds("1.5h", day) == 5400
    assert duration_seconds("5bd", day) == 5 * 8 * 3600


FIVE_MISTAKES = [
    ("tz: Asia/Kolkata", "tz: Asia/Kolkatta", "markets.IN.tz", "unknown timezone"),
    ('hours: {mon-fri: ["08:00-18:00"]}', 'hours: {mon-fri: ["08:00-12:00", "11:00-18:00"]}',
     "markets.US-East.hours", "overlapping"),
    ("state: NEW, window: 4h}", "state: NEW, window: 0h}", "windows[0].window", "greater than zero"),
    ("at: 1.0, kind: sla_breach,", "at: 0.7, kind: sla_breach,", "ladder[1].at", "must increase"),
    ("notify: [owner, customer_success]", "notify: [owner, customer_succes]", "churn.notify[1]",
     "customer_success"),
]


def test_five_mistakes_give_five_messages_naming_their_keys(tmp_path: Path) -> None:
    text = EXAMPLE_POLICY.read_text()
    for good, bad, _key, _words in FIVE_MISTAKES:
        assert good in text
        text = text.replace(good, bad, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    problems = caught.value.problems
    assert len(problems) == 5
    by_key = {problem.key: problem for problem in problems}
    for _good, bad, key, words in FIVE_MISTAKES:
        assert key in by_key, (key, [p.key for p in problems])
        assert words in by_key[key].message
        assert by_key[key].file == str(path)
        # the line named is the line that holds the mistake (or its key)
        line = text.splitlines()[by_key[key].line - 1]
        assert bad.split(":")[0].split("{")[-1].strip().strip('"') in line


def test_cross_section_problems_are_reported_with_fixes() -> None:
    raw = example_raw()
    raw["windows"].append({"id": "new.default", "state": "PROPOSAL", "market": "APAC", "window": "2h"})
    del raw["notifications"]["regional_vp"]
    raw["progress"]["NEW"].append("viewed")
    raw["bogus"] = 1
    raw["states"]["salesforce"]["map"]["Proposal"] = "QUALIFIED"
    raw["states"]["hubspot"]["map"]["OPEN_DEAL"] = "QUALIFIED"
    with pytest.raises(PolicyError) as caught:
        validate_policy(raw, "p.yaml")
    messages = {p.key: p for p in caught.value.problems}
    assert "also used" in messages["windows[7].id"].message
    assert "unknown market 'APAC'" in messages["windows[7].market"].message
    assert "never applies" in messages["windows[7].state"].message
    assert "regional_vp" in messages["high_value.notify[2]"].message
    assert "viewed" in messages["progress.NEW[4]"].message
    assert messages["bogus"].fix
    assert all(p.fix for p in caught.value.problems)


def test_unreadable_and_malformed_files_are_problems_not_tracebacks(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as missing:
        load_policy(tmp_path / "nope.yaml")
    assert "cannot read" in missing.value.problems[0].message
    broken = tmp_path / "broken.yaml"
    broken.write_text("markets: [\n")
    with pytest.raises(PolicyError) as syntax:
        load_policy(broken)
    assert syntax.value.problems[0].key == "(syntax)"


def test_same_content_same_version_and_any_rule_change_a_new_one() -> None:
    a = validate_policy(example_raw())
    b = validate_policy(example_raw())
    assert version_of(a) == version_of(b)
    relabelled = example_raw() | {"label": "renamed"}
    assert version_of(validate_policy(relabelled)) == version_of(a)
    changed = example_raw()
    changed["ladder"][0]["at"] = 0.75
    new = validate_policy(changed)
    assert version_of(new) != version_of(a)
    changes = diff_policies(a, new)
    assert [(c.id, c.change) for c in changes] == [("sla.imminent", "changed")]
    assert "0.8 -> 0.75" in changes[0].detail
