"""`sidecar policy diff|history|apply`: versions by short hash, the diff in words, and an apply that
shows what changes and who stays on the old version before it asks (or refuses without a terminal)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sidecar import cli_policy
from sidecar.cli import app
from sidecar.policy import load_policy
from sidecar.policy.version import version_of
from sidecar.settings import Settings
from sidecar.store.db import make_engine, session_factory, transaction
from sidecar.store.models import Clock, Lead
from tests.conftest import EXAMPLE_POLICY

runner = CliRunner()
OLD = version_of(load_policy(EXAMPLE_POLICY))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIDECAR_DATABASE_URL", raising=False)
    monkeypatch.delenv("SIDECAR_POLICY_FILE", raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    return tmp_path


def candidate(workdir: Path) -> Path:
    path = workdir / "candidate.yaml"
    path.write_text(EXAMPLE_POLICY.read_text().replace("at: 0.8,", "at: 0.9,")
                    .replace("pause_states: [ON_HOLD, COMPLIANCE_HOLD]", "pause_states: [COMPLIANCE_HOLD]"))
    return path


def add_running_clocks(count: int) -> None:
    at = datetime(2026, 11, 24, 13, tzinfo=UTC)
    with transaction(session_factory(make_engine(Settings().database_url))) as session:
        for i in range(count):
            lead = Lead(crm="salesforce", crm_id=f"00Q00000000000{i}", state="NEW", crm_status="Open",
                        state_entered_at=at, crm_modified_at=at)
            session.add(lead)
            session.flush()
            session.add(Clock(lead_id=lead.id, state="NEW", rule_id="new.default", policy_version=OLD,
                              market="US-East", window_s=14400, started_at=at, running_since=at,
                              status="open" if i else "closed"))


def test_diff_takes_short_hashes_and_says_what_changed(workdir: Path) -> None:
    new = candidate(workdir)
    result = runner.invoke(app, ["policy", "diff", OLD[:6], str(new)])
    assert result.exit_code == 0, result.output
    assert f"version {OLD} '2026-Q4 policy' -> {new} ({version_of(load_policy(new))})" in result.output
    assert "ON_HOLD no longer pauses clocks" in result.output
    assert "at: 0.8 -> 0.9" in result.output
    unknown = runner.invoke(app, ["policy", "diff", "beef00", str(new)])
    assert unknown.exit_code == 2
    assert "no recorded policy version starts with 'beef00'" in unknown.output


def test_apply_refuses_without_a_terminal_then_applies_with_yes(workdir: Path) -> None:
    add_running_clocks(3)  # 2 running, 1 closed
    new = candidate(workdir)
    refused = runner.invoke(app, ["policy", "apply", str(new)])
    assert refused.exit_code == 1
    assert "2 running clocks stay on their old version (2 on " + OLD + ")" in refused.output
    assert "ON_HOLD no longer pauses clocks" in refused.output  # the diff is shown first
    assert refused.output.strip().splitlines()[-1] == (
        "error: policy apply asks before applying and there is no terminal to ask on: pass --yes")
    history = runner.invoke(app, ["policy", "history"])
    assert history.output.count("active") == 1 and OLD in history.output
    assert version_of(load_policy(new)) not in history.output  # nothing was applied
    applied = runner.invoke(app, ["policy", "apply", str(new), "--yes"])
    assert applied.exit_code == 0, applied.output
    assert f"active policy {version_of(load_policy(new))}" in applied.output
    history = runner.invoke(app, ["policy", "history"])
    lines = [line.strip("│ ") for line in history.output.splitlines()
             if OLD in line or version_of(load_policy(new)) in line]
    assert lines[0].startswith(version_of(load_policy(new))) and "active" in lines[0]
    assert lines[1].startswith(OLD) and lines[1].endswith("│ 2")  # the running clocks kept their version


def test_apply_asks_on_a_terminal_and_a_no_changes_nothing(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    new = candidate(workdir)
    assert runner.invoke(app, ["policy", "apply", str(new), "--yes"]).exit_code == 0
    monkeypatch.setattr(cli_policy, "_interactive", lambda: True)
    declined = runner.invoke(app, ["policy", "apply", OLD[:5]], input="n\n")
    assert declined.exit_code == 1 and "apply " + OLD + "?" in declined.output
    assert "ON_HOLD now pauses clocks" in declined.output
    assert "error: not applied" in declined.output
    accepted = runner.invoke(app, ["policy", "apply", OLD[:5]], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert f"active policy {OLD}" in accepted.output
    again = runner.invoke(app, ["policy", "apply", OLD])
    assert again.exit_code == 0 and "already active; nothing to apply" in again.output
