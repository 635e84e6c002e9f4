"""The strict YAML reader: duplicate keys are refused with both lines, every key's line is known, and
a typo'd key gets a "did you mean"."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config_yaml import ConfigError, did_you_mean, parse_yaml, read_yaml
from sidecar.policy import PolicyError, load_policy
from tests.conftest import EXAMPLE_POLICY


def test_a_second_key_is_refused_naming_both_lines_at_any_depth() -> None:
    text = ("markets:\n"
            "  US:\n"
            "    hours: {mon-fri: ['08:00-18:00']}\n"
            "    tz: America/New_York\n"
            "    hours: {sat: ['09:00-12:00']}\n"
            "label: a\n"
            "label: b\n")
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "p.yaml")
    problems = caught.value.problems
    assert [(p.key, p.line) for p in problems] == [("markets.US.hours", 5), ("label", 7)]
    assert "already set on line 3" in problems[0].message and "already set on line 6" in problems[1].message


def test_keep_going_hands_the_duplicates_over_with_the_data() -> None:
    data, lines = parse_yaml("a: 1\nb: [x, {c: 2}]\na: 3\n", "f.yaml", keep_going=True)
    assert data == {"a": 3, "b": ["x", {"c": 2}]}  # PyYAML's last-wins, reported rather than silent
    assert [p.line for p in lines.duplicates] == [3]
    assert lines.line(("b", 1, "c")) == 2 and lines.line(("a",)) == 1
    assert lines.line(("b", 1, "missing")) == 2  # a missing key is reported where its parent is
    assert lines.line_of_key("b[1].c") == 2


def test_equal_keys_in_different_mappings_are_fine_and_merge_keys_are_left_alone() -> None:
    data, _lines = parse_yaml("a: {x: 1}\nb: {x: 2}\nbase: &base {y: 1}\nc: {<<: *base, y: 2}\n", "f.yaml")
    assert data["c"] == {"y": 2}


def test_syntax_errors_and_unreadable_files_name_the_line_or_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as syntax:
        parse_yaml("a: 1\nb: [\n", "f.yaml")
    assert syntax.value.problems[0].key == "(syntax)" and syntax.value.problems[0].line == 3
    with pytest.raises(ConfigError) as missing:
        read_yaml(tmp_path / "nope.yaml", "config/x.example.yaml")
    assert "cannot read" in missing.value.problems[0].message
    assert "config/x.example.yaml" in missing.value.problems[0].fix


def test_did_you_mean() -> None:
    assert did_you_mean("huors", ["hours", "tz", "holidays"]) == ' (did you mean "hours"?)'
    assert did_you_mean("zzz", ["hours", "tz"]) == ""


def test_the_policy_loader_reports_a_duplicate_with_its_other_problems(tmp_path: Path) -> None:
    text = EXAMPLE_POLICY.read_text().replace("    tz: Europe/Berlin\n",
                                              "    tz: Europe/Berlin\n    tz: Europe/Paris\n    hourz: {}\n")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    by_key = {p.key: p for p in caught.value.problems}
    assert "duplicate key" in by_key["markets.DACH.tz"].message
    assert by_key["markets.DACH.hourz"].message == "unknown key 'hourz' (did you mean \"hours\"?)"
    lines = [p.line or 0 for p in caught.value.problems]
    assert lines == sorted(lines)
