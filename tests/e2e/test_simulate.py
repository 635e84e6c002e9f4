"""`sidecar simulate` on recorded demos (issue 13, item 6).

Two recordings: 14 virtual hours of the synthetic org on both CRMs (compliance holds, churn flags,
a high-value reassignment, SLA reassignments), and a scripted morning (tests/e2e/scenarios/
simulate-morning.yaml) with a lead called between the 80 % and a would-be 90 % warning, a
person's owner change, and a compliance hold cleared by a person. Their emulators stay up while the
simulations run, so that "no CRM and no Slack" is checked on the servers themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from connectors.emulators.demo import Demo, DemoOptions
from connectors.emulators.scenario import load_scenario
from sidecar.cli import app
from sidecar.policy import load_policy
from sidecar.simulate import recorded_span, simulate
from sidecar.simulate_compare import Account, account, changed_leads, mismatches
from sidecar.store.db import transaction
from sidecar.store.models import Lead
from tests.conftest import EXAMPLE_POLICY

SCENARIO = Path(__file__).parent / "scenarios" / "simulate-morning.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    demo = Demo(DemoOptions(crm="both", seed=3, duration=timedelta(hours=14)), tmp_path_factory.mktemp("synthetic"))
    try:
        demo.run()
        yield demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def morning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    scenario = load_scenario(SCENARIO)
    demo = Demo(DemoOptions(crm=scenario.crm, scenario=scenario, duration=timedelta(hours=4)),
                tmp_path_factory.mktemp("morning"))
    try:
        demo.run()
        yield demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def candidate_90(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = EXAMPLE_POLICY.read_text()
    assert "{id: sla.imminent, at: 0.8," in text
    path = tmp_path_factory.mktemp("policies") / "candidate.yaml"
    path.write_text(text.replace("{id: sla.imminent, at: 0.8,", "{id: sla.imminent, at: 0.9,"))
    return path


def requests_to_emulators(demo: Demo) -> int:
    return sum(len(emulator.log.entries) for emulator in (demo.salesforce, demo.hubspot, demo.slack)
               if emulator is not None)


def side_by_side(demo: Demo, policy: Path, workdir: Path, skip: timedelta = timedelta(0)) -> tuple[Account, Account]:
    """(what the recorded sidecar did, what the simulation under `policy` did) to the same leads,
    in the recorded span less its first `skip`."""
    with transaction(demo.sessions) as session:
        whole = recorded_span(session)
        keys = {(lead.crm, lead.crm_id) for lead in session.scalars(select(Lead))}
    assert whole is not None
    span = (whole[0] + skip, whole[1])
    run = simulate(demo.sessions, load_policy(policy), str(policy), *span, workdir)
    with transaction(demo.sessions) as session:
        recorded = account(session, keys, *span)
    with transaction(run.sessions) as session:
        simulated = account(session, keys, *span)
    run.sessions.kw["bind"].dispose()
    return recorded, simulated


@pytest.mark.parametrize("which", ["synthetic", "morning"])
def test_the_active_policy_reproduces_the_recording_exactly(which: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    demo: Demo = request.getfixturevalue(which)
    before = requests_to_emulators(demo)
    recorded, simulated = side_by_side(demo, EXAMPLE_POLICY, tmp_path)
    assert requests_to_emulators(demo) == before  # no CRM, no Slack
    # Every warning, breach and reassignment of every lead: same instant, same rule, same new owner.
    assert mismatches(recorded, simulated) == {}
    assert {what: recorded.total(what) for what in ("warnings", "breaches", "reassignments")} == \
           {what: simulated.total(what) for what in ("warnings", "breaches", "reassignments")}
    assert recorded.total("warnings") > 0 and recorded.total("breaches") > 0 and recorded.total("reassignments") > 0
    assert simulated.notifications == recorded.notifications
    assert changed_leads(recorded, simulated) == []


def test_a_period_from_the_middle_replays_its_leads_from_their_arrival(synthetic: Demo, tmp_path: Path) -> None:
    recorded, simulated = side_by_side(synthetic, EXAMPLE_POLICY, tmp_path, skip=timedelta(hours=9))
    assert recorded.total("warnings") > 0 and recorded.total("reassignments") > 0
    assert mismatches(recorded, simulated) == {}
    whole, _ = side_by_side(synthetic, EXAMPLE_POLICY, tmp_path / "whole")
    assert recorded.total("warnings") < whole.total("warnings")  # the period left some out


def test_the_warning_at_90_percent_keeps_the_breaches_and_warns_less(morning: Demo, candidate_90: Path,
                                                                     tmp_path: Path) -> None:
    recorded, simulated = side_by_side(morning, candidate_90, tmp_path)
    breaches = {key: [(s.at, s.rule_id) for s in lead.steps if s.what == "breaches"]
                for key, lead in recorded.leads.items()}
    assert breaches == {key: [(s.at, s.rule_id) for s in lead.steps if s.what == "breaches"]
                        for key, lead in simulated.leads.items()}
    assert simulated.total("warnings") < recorded.total("warnings")
    changed = changed_leads(recorded, simulated)
    # Lucas was called at 08:50: warned at 80 % (08:48), never at 90 % (08:54).
    assert [(c.lead.name, c.before, c.after) for c in changed] == [("Lucas Moreau", (1, 0, ()), (0, 0, ()))]
    # Amara and Mei were not worked in time: each warning of theirs moves to 90 % of its window.
    moved = {recorded.leads[key].name for key in mismatches(recorded, simulated)} - {"Lucas Moreau"}
    assert moved == {"Amara Okafor", "Mei Tanaka"}
    first = [s.at for s in simulated.leads[next(k for k, v in simulated.leads.items() if v.name == "Mei Tanaka")].steps]
    assert first[0].strftime("%H:%M") == "13:54"  # 08:54 New York


def test_the_synthetic_org_at_90_percent_never_warns_more(synthetic: Demo, candidate_90: Path, tmp_path: Path) -> None:
    recorded, simulated = side_by_side(synthetic, candidate_90, tmp_path)
    assert simulated.total("breaches") == recorded.total("breaches")
    for key, lead in recorded.leads.items():
        assert simulated.leads[key].count("warnings") <= lead.count("warnings"), lead.name
        assert simulated.leads[key].count("breaches") == lead.count("breaches"), lead.name


def test_the_command_shows_both_sides_and_the_changed_leads(morning: Demo, candidate_90: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_DATABASE_URL", f"sqlite:///{morning.workdir / 'demo.db'}")
    before = requests_to_emulators(morning)
    result = runner.invoke(app, ["simulate", "--policy", str(candidate_90), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert requests_to_emulators(morning) == before
    report = json.loads(result.output)
    sections = {s["title"]: s["rows"] for s in report["sections"]}
    totals = {row["what"]: (row["active"], row["candidate"]) for row in sections["Totals"]}
    assert totals["warnings"] == (5, 4) and totals["breaches"] == (4, 4) and totals["reassignments"] == (2, 2)
    assert totals["notifications to owner"] == (10, 9)  # Lucas's warning DM is the one that goes
    assert [row["lead"] for row in sections["Leads whose outcome changes"]] == ["Lucas Moreau"]
    assert sections["Leads whose outcome changes"][0]["active"].startswith("1 warning(s), 0 breach(es)")
    assert {row["team"] for row in sections["By team"]} == {"US East"}
    page = tmp_path / "simulate.html"
    html = runner.invoke(app, ["simulate", "--policy", str(candidate_90), "--format", "html", "--out", str(page)])
    assert html.exit_code == 0, html.output
    assert "<h2>Leads whose outcome changes</h2><table>" in page.read_text()
    assert "<td>Lucas Moreau</td>" in page.read_text() and "<script" not in page.read_text()
    table = runner.invoke(app, ["simulate", "--policy", str(EXAMPLE_POLICY)])
    assert table.exit_code == 0, table.output
    assert "replay check (same policy as recorded): 5 of 5 lead(s) escalated exactly as recorded" in table.output
    assert "Leads whose outcome changes:\n  none" in table.output


def test_bad_input_is_one_line(morning: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_DATABASE_URL", f"sqlite:///{morning.workdir / 'demo.db'}")
    broken = tmp_path / "broken.yaml"
    broken.write_text(EXAMPLE_POLICY.read_text().replace("{id: sla.imminent, at: 0.8,", "{id: sla.imminent, at: soon,"))
    result = runner.invoke(app, ["simulate", "--policy", str(broken)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"problem(s) in {broken}" in result.output.splitlines()[-1]
    empty = runner.invoke(app, ["simulate", "--policy", str(EXAMPLE_POLICY), "--from", "2030-01-01",
                                "--to", "2030-01-02"])
    assert empty.exit_code == 1
    assert empty.output.strip() == ("error: no lead arrived, changed or was escalated between 2030-01-01 00:00 "
                                    "and 2030-01-02 00:00 UTC; widen --from/--to")
    missing = runner.invoke(app, ["simulate", "--policy", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "no such policy file" in missing.output
