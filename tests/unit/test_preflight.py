"""The preflight's step list: a step that breaks is that step's one problem, the others still run;
online steps are skipped offline; later work adds a step by appending it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar import wiring
from sidecar.policy import enforcement
from sidecar.preflight import STEPS, CheckContext, Finding, Level, Step, check_policy, run_steps
from sidecar.settings import Settings
from tests.conftest import EXAMPLE_POLICY


def _broken(ctx: CheckContext) -> list[Finding]:
    raise ConnectionRefusedError(111, "Connection refused")


def _fine(ctx: CheckContext) -> list[Finding]:
    return [Finding(Level.OK, "teams", f"policy loaded: {ctx.policy is not None}")]


def test_a_broken_step_is_one_problem_and_the_next_steps_still_run() -> None:
    ctx = CheckContext(Settings(), EXAMPLE_POLICY, wiring)
    findings = run_steps(ctx, [STEPS[0], Step("teams routes", _broken), Step("teams", _fine)])
    assert [(f.level, f.where) for f in findings] == [
        (Level.OK, str(EXAMPLE_POLICY)), (Level.PROBLEM, "teams routes"), (Level.OK, "teams")]
    assert "connection refused" in findings[1].text
    assert findings[2].text == "policy loaded: True"  # a later step sees what the policy step loaded


def test_offline_skips_the_online_steps(tmp_path: Path) -> None:
    ctx = CheckContext(Settings(), EXAMPLE_POLICY, wiring, offline=True)
    online = Step("needs the network", _broken, online=True)
    assert run_steps(ctx, [online]) == []
    assert {step.name for step in STEPS if step.online} == {"database", "crm and slack", "webhooks"}


def test_a_policy_key_the_engine_ignores_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = CheckContext(Settings(), EXAMPLE_POLICY, wiring)
    assert [f.level for f in check_policy(ctx)] == [Level.OK]  # every key of the example is acted on
    # A section whose keys the engine did not act on (as churn's pause_outreach once was) is named.
    monkeypatch.setitem(enforcement.NOT_ENFORCED, "churn", ("pause_outreach",))
    findings = check_policy(ctx)
    assert [(f.level, f.text) for f in findings[1:]] == [
        (Level.WARNING, "churn.pause_outreach: set, but the engine does not act on it yet (it has no effect)")]


def test_a_world_readable_env_file_is_a_warning_with_the_fix(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SIDECAR_SLACK_BOT_TOKEN=xoxb-1\n")
    ctx = CheckContext(Settings(), EXAMPLE_POLICY, wiring, offline=True, env_file=env)
    step = [s for s in STEPS if s.name == "secrets file"]
    env.chmod(0o644)
    [finding] = run_steps(ctx, step)
    assert finding.level is Level.WARNING and finding.where == str(env)
    assert "readable by every user" in finding.text and "mode 644" in finding.text
    assert f"chmod 600 {env}" in finding.text
    env.chmod(0o600)
    assert run_steps(ctx, step) == []
    env.unlink()  # no .env at all (settings from the environment): nothing to say
    assert run_steps(ctx, step) == []


def test_sidecar_run_warns_about_a_world_readable_env_file_before_starting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from typer.testing import CliRunner

    from sidecar import cli, logs, service

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"SIDECAR_DATABASE_URL=sqlite:///{tmp_path / 'x.db'}\nSIDECAR_WEB_PORT=0\n")
    (tmp_path / ".env").chmod(0o604)
    started: list[bool] = []
    monkeypatch.setattr(service, "run", lambda *args: started.append(True))
    monkeypatch.setattr(logs, "configure", lambda *args: None)  # keep pytest's log capture in place
    with caplog.at_level("WARNING"):
        result = CliRunner().invoke(cli.app, ["run"])
    assert result.exit_code == 0, result.output
    assert started == [True]  # a warning, not a refusal
    assert any("chmod 600 .env" in r.getMessage() for r in caplog.records), caplog.records
