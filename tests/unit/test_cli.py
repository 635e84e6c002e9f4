from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sidecar.cli import app
from tests.conftest import EXAMPLE_POLICY

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIDECAR_DATABASE_URL", raising=False)
    monkeypatch.delenv("SIDECAR_POLICY_FILE", raising=False)
    return tmp_path


def test_help_lists_every_command_with_one_line() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "check", "policy"):
        assert command in result.output


def test_init_twice_is_harmless_then_check_passes(workdir: Path) -> None:
    first = runner.invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    assert (workdir / "config" / "policy.yaml").read_text() == EXAMPLE_POLICY.read_text()
    assert (workdir / "sidecar.db").exists()
    (workdir / "config" / "policy.yaml").write_text(EXAMPLE_POLICY.read_text() + "\n# my edit\n")
    second = runner.invoke(app, ["init"])
    assert second.exit_code == 0, second.output
    assert "# my edit" in (workdir / "config" / "policy.yaml").read_text()  # never overwritten
    checked = runner.invoke(app, ["check", "--offline"])  # the config files alone are fine
    assert checked.exit_code == 0 and "policy OK" in checked.output
    online = runner.invoke(app, ["check"])  # but `sidecar run` would refuse: no CRM credentials
    assert online.exit_code == 1 and "no CRM configured" in online.output


def test_check_exits_1_and_lists_problems(workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text(EXAMPLE_POLICY.read_text().replace("window: 4h", "window: -4h")
                   .replace("tz: Europe/Berlin", "tz: Europe/Berlln"))
    result = runner.invoke(app, ["check", "--offline", "--policy", str(bad)])
    assert result.exit_code == 1
    assert "windows[0].window" in result.output
    assert "markets.DACH.tz" in result.output
    assert "2 problem(s)" in result.output


def test_policy_show_and_diff(workdir: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    shown = runner.invoke(app, ["policy", "show"])
    assert shown.exit_code == 0 and "sla.reassign" in shown.output
    changed = workdir / "changed.yaml"
    changed.write_text(EXAMPLE_POLICY.read_text().replace("window: 24h", "window: 12h"))
    diff = runner.invoke(app, ["policy", "diff", str(EXAMPLE_POLICY), str(changed)])
    assert diff.exit_code == 0, diff.output
    assert "new.cold_list" in diff.output and "changed" in diff.output


def test_directory_apply_show_and_pto(workdir: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    applied = runner.invoke(app, ["directory", "apply"])
    assert applied.exit_code == 0, applied.output
    assert "2 teams, 6 reps" in applied.output
    shown = runner.invoke(app, ["directory", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    rows = {row["rep"]: row for row in map(json.loads, shown.output.splitlines())}
    assert len(rows) == 6 and rows["0055e000001MgrAAA"]["why_not"] == "role manager is not routed"
    assert rows["0055e000001RepAAA"]["team"] == "us-east-inbound"
    pto = runner.invoke(app, ["directory", "pto", "0055e000001RepAAA", "2026-12-01", "2026-12-03"])
    assert pto.exit_code == 0 and "2026-12-01..2026-12-03 (America/New_York)" in pto.output
    unknown = runner.invoke(app, ["directory", "pto", "005nobody", "2026-12-01", "2026-12-03"])
    assert unknown.exit_code == 1


def test_a_broken_directory_is_refused_with_every_problem(workdir: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    (workdir / "bad.yaml").write_text("teams:\n  - {id: t1, name: T, market: Atlantis}\n"
                                      "reps:\n  - {id: r1, crm: salesforce, name: A, email: a@x, team: t2}\n")
    result = runner.invoke(app, ["directory", "apply", "--file", str(workdir / "bad.yaml")])
    assert result.exit_code == 1
    assert "Atlantis" in result.output and "unknown team 't2'" in result.output
