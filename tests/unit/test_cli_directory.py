"""`sidecar directory`: applying the file never silently erases PTO entered with `directory pto`,
problems name their line, `show` keeps ids whole and says what to do when the directory is empty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.store.models import RepPto

runner = CliRunner()
REP = "0055e000001RepAAA"  # Marcus Lee, reps[1] in config/directory.example.yaml, with one PTO range


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("SIDECAR_DATABASE_URL", "SIDECAR_POLICY_FILE", "SIDECAR_DIRECTORY_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    return tmp_path


def _pto_ranges(workdir: Path, rep: str) -> int:
    engine = create_engine(f"sqlite:///{workdir / 'sidecar.db'}")
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(RepPto).where(RepPto.rep_id == rep)).scalar()
    engine.dispose()
    return int(count or 0)


def test_apply_refuses_to_erase_pto_entered_on_the_command_line(workdir: Path) -> None:
    assert runner.invoke(app, ["directory", "apply"]).exit_code == 0
    assert runner.invoke(app, ["directory", "pto", REP, "2099-12-01", "2099-12-03"]).exit_code == 0
    refused = runner.invoke(app, ["directory", "apply"])
    assert refused.exit_code == 1
    text = (workdir / "config" / "directory.yaml").read_text()
    pto_line = text[:text.index("    pto:", text.index(f"id: {REP}"))].count("\n") + 1
    assert f"config/directory.yaml:{pto_line}: reps[1].pto: rep {REP} is away 2099-12-01..2099-12-03" \
        in refused.stderr
    assert "add `- {from: 2099-12-01, to: 2099-12-03}`" in refused.stderr and "--replace-pto" in refused.stderr
    assert "nothing was applied" in refused.stderr
    # listing the range in the file is the way to keep it; the apply then goes through
    listed = "      - {from: 2026-12-24, to: 2026-12-31}\n"
    text = text.replace(listed, listed + "      - {from: 2099-12-01, to: 2099-12-03}\n", 1)
    (workdir / "config" / "directory.yaml").write_text(text)
    kept = runner.invoke(app, ["directory", "apply"])
    assert kept.exit_code == 0, kept.output
    assert _pto_ranges(workdir, REP) == 2  # the file's Christmas week and the range entered by hand


def test_replace_pto_drops_what_the_file_does_not_list(workdir: Path) -> None:
    assert runner.invoke(app, ["directory", "apply"]).exit_code == 0
    assert runner.invoke(app, ["directory", "pto", REP, "2099-12-01", "2099-12-03"]).exit_code == 0
    assert _pto_ranges(workdir, REP) == 2
    replaced = runner.invoke(app, ["directory", "apply", "--replace-pto"])
    assert replaced.exit_code == 0, replaced.output
    assert _pto_ranges(workdir, REP) == 1  # only what the file lists
    again = runner.invoke(app, ["directory", "apply"])  # nothing left to protect
    assert again.exit_code == 0, again.output


def test_problems_carry_their_line_and_duplicate_keys_are_refused(workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("teams:\n"
                   "  - {id: t1, name: T, market: US-East}\n"
                   "reps:\n"
                   "  - id: r1\n"
                   "    crm: salesforce\n"
                   "    name: A\n"
                   "    email: a@example.com\n"
                   "    team: t1\n"
                   "    rol: manager\n"
                   "    team: t2\n")
    result = runner.invoke(app, ["directory", "apply", "--file", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:9: reps[0].rol: unknown key 'rol' (did you mean \"role\"?)" in result.stderr
    assert f"{bad}:10: reps[0].team: duplicate key: 'team' is already set on line 8" in result.stderr
    assert "Traceback" not in result.output


def test_show_on_an_empty_directory_says_to_apply(workdir: Path) -> None:
    shown = runner.invoke(app, ["directory", "show"])
    assert shown.exit_code == 0
    assert "the directory is empty: run `sidecar directory apply`" in shown.stdout


def test_show_keeps_every_id_whole(workdir: Path) -> None:
    assert runner.invoke(app, ["directory", "apply"]).exit_code == 0
    ids = [row["rep"] for row in map(json.loads, runner.invoke(app, ["directory", "show", "--json"]).stdout
                                     .splitlines())]
    table = runner.invoke(app, ["directory", "show"], env={"COLUMNS": "60"}).stdout
    assert len(ids) == 6 and all(rep in table for rep in ids) and "…" not in table
