"""`sidecar outcomes export|rates` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sidecar.cli import app

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIDECAR_DATABASE_URL", raising=False)
    monkeypatch.delenv("SIDECAR_POLICY_FILE", raising=False)
    return tmp_path


def test_outcomes_export_writes_csv_and_json_and_refuses_other_formats(workdir: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    as_csv = runner.invoke(app, ["outcomes", "export", "--since", "2026-11-01"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.output.splitlines()[0].startswith(
        "crm,crm_id,lead_name,market,source,team_id,team_name,owner_id,owner_name,intent")  # names beside the ids
    out = workdir / "outcomes.json"
    assert runner.invoke(app, ["outcomes", "export", "--format", "json", "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text()) == []
    bad = runner.invoke(app, ["outcomes", "export", "--format", "xml"])
    assert bad.exit_code == 2 and "csv or json" in bad.output


def test_outcomes_rates_names_a_bad_group(workdir: Path) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    ok = runner.invoke(app, ["outcomes", "rates", "--by", "market,owner_id"])
    assert ok.exit_code == 0 and "SLA hit rate" in ok.output
    bad = runner.invoke(app, ["outcomes", "rates", "--by", "colour"])
    assert bad.exit_code == 1 and "cannot group outcomes by colour" in bad.output

