from __future__ import annotations

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
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 0 and "policy OK" in checked.output


def test_check_exits_1_and_lists_problems(workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text(EXAMPLE_POLICY.read_text().replace("window: 4h", "window: -4h")
                   .replace("tz: Europe/Berlin", "tz: Europe/Berlln"))
    result = runner.invoke(app, ["check", "--policy", str(bad)])
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
