"""`sidecar policy test`: the shipped scenarios pass under the example policy; a changed expectation
fails with a per-lead diff of expected against actual; bad expectations are one clear error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.policy.expectations import Observed, check, parse_expectations
from tests.conftest import EXAMPLE_POLICY, ROOT

runner = CliRunner()
SCENARIOS = sorted((ROOT / "config" / "scenarios").glob("*.yaml"))
MORNING = ROOT / "config" / "scenarios" / "paid-social-morning.yaml"


def test_the_shipped_scenarios_pass_with_the_example_policy() -> None:
    assert len(SCENARIOS) >= 2
    result = runner.invoke(app, ["policy", "test", "--policy", str(EXAMPLE_POLICY), *map(str, SCENARIOS)])
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS ") == len(SCENARIOS)
    assert "paid-social-morning.yaml: 6 expectations hold" in result.output


def test_a_changed_expectation_fails_with_a_readable_diff(tmp_path: Path) -> None:
    changed = tmp_path / "morning.yaml"
    changed.write_text(MORNING.read_text()
                       .replace('kind: sla_breach, at: "09:00', 'kind: sla_breach, at: "09:05')
                       .replace("reassigned_to_team: us-east", "reassigned_to_team: dach"))
    result = runner.invoke(app, ["policy", "test", "--policy", str(EXAMPLE_POLICY), str(changed)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"FAIL {changed}: 2 of 6 expectations not met (policy ")
    assert lines[1] == "  lead aisha (Aisha Al-Mansoori)"
    assert lines[2] == "    - expected: sla_breach at 2026-11-24 09:05 America/New_York   (expect[1])"
    # nobody acts in a scripted run: the new owner's window runs out too
    assert lines[3] == ("    + actual:   sla_breach at 2026-11-24 09:00 America/New_York (rule sla.breach); "
                        "sla_breach at 2026-11-24 10:30 America/New_York (rule sla.breach); "
                        "sla_breach at 2026-11-24 12:00 America/New_York (rule sla.breach)")
    assert lines[4] == "    - expected: reassigned to team dach   (expect[3])"
    assert lines[5].startswith("    + actual:   sla_breach_auto_reassign at 2026-11-24 09:30 -0500 (rule "
                               "sla.reassign) to us-east-rep")
    assert lines[5].endswith(" of team us-east")
    assert lines[6].startswith("    what happened: Tue 08:00 first_response_task, Tue 08:48 sla_breach_imminent, "
                               "Tue 09:00 sla_breach")
    assert "jonas" not in result.output  # leads whose expectations hold are not listed
    assert lines[-1] == "error: 1 of 1 scenario file(s) failed"


def test_bad_expectations_are_one_error_naming_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MORNING.read_text().rsplit("\nexpect:", 1)[0] + "\nexpect:\n"
                   "  - {lead: nobody, kind: sla_breach}\n  - {lead: aisha, kind: sla_breach, at: noon}\n"
                   "  - {lead: aisha, kind: sla_breach, none: sla_breach}\n")
    result = runner.invoke(app, ["policy", "test", "--policy", str(EXAMPLE_POLICY), str(bad)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    for words in ("expect[0].lead: nobody is not a lead the scenario creates (aisha, jonas)",
                  "expect[1].at: 'noon'", "expect[2]: name exactly one of"):
        assert words in result.output


NY = ZoneInfo("America/New_York")
START = datetime(2026, 11, 24, 8, 0, tzinfo=NY)


def at(hhmm: str) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return START.replace(hour=hour, minute=minute).astimezone(UTC)


@pytest.mark.parametrize(("expect", "met"), [
    ({"lead": "L1", "kind": "sla_breach", "at": "09:00 America/New_York"}, True),
    ({"lead": "L1", "kind": "sla_breach", "at": "60m"}, True),
    ({"lead": "L1", "kind": "sla_breach", "at": "2026-11-24 15:00 Europe/Berlin"}, True),
    ({"lead": "L1", "kind": "sla_breach", "at": "09:01 America/New_York"}, False),
    ({"lead": "L1", "rule": "sla.breach"}, True),
    ({"lead": "L2", "none": "sla_breach"}, True),
    ({"lead": "L1", "none": "sla.breach"}, False),  # `none` takes a kind or a rule id
    ({"lead": "L1", "reassigned_to_team": "us-east"}, True),
    ({"lead": "L1", "reassigned_to": "rep1"}, True),
    ({"lead": "L1", "reassigned_to_team": "us-east", "reassigned_to": "rep2"}, False),
    ({"lead": "L2", "reassigned_to_team": "us-east"}, False),
    # typed: a step the admin labelled "handover" is still a reassignment; a kind named like one is not
    ({"lead": "L1", "action": "reassign", "at": "09:30 America/New_York"}, True),
    ({"lead": "L2", "action": "reassign"}, False),
])
def test_each_kind_of_expectation(expect: dict[str, str], met: bool) -> None:
    observed = [Observed("L1", at("09:00"), "sla_breach", "sla.breach", "notify"),
                Observed("L1", at("09:30"), "handover", "sla.reassign", "reassign", "rep1", "us-east"),
                Observed("L2", at("09:30"), "sla_breach_auto_reassign", "x.y", "notify")]
    outcome = check(parse_expectations([expect], START, {"L1", "L2"}), observed, NY)
    assert outcome.passed is met
