"""`sidecar check` as a preflight: one mistake in each config file is listed with its file and line,
sorted; fake credentials against an unreachable API give one line per system; the webhook URLs an
admin enters are built from SIDECAR_PUBLIC_URL and match the routes the sidecar serves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from connectors.emulators.hubspot import HubSpotEmulator
from sidecar import wiring
from sidecar.cli import app
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
ENV = ("SIDECAR_SF_USERNAME", "SIDECAR_SF_CLIENT_ID", "SIDECAR_SF_SESSION_ID", "SIDECAR_SF_INSTANCE_URL",
       "SIDECAR_SF_DOMAIN", "SIDECAR_HUBSPOT_ACCESS_TOKEN", "SIDECAR_HUBSPOT_API_BASE", "SIDECAR_SLACK_BOT_TOKEN",
       "SIDECAR_SLACK_API_BASE", "SIDECAR_DATABASE_URL", "SIDECAR_POLICY_FILE", "SIDECAR_DIRECTORY_FILE",
       "SIDECAR_PUBLIC_URL")

# (file, the example's text, what replaces it): one mistake per file.
MISTAKES = [
    ("policy.yaml", '    hours: {mon-fri: ["08:00-18:00"]}\n',
     '    hours: {mon-fri: ["08:00-18:00"]}\n    hours: {sat: ["09:00-12:00"]}\n'),
    ("directory.yaml", "    email: marcus.lee@example.com\n",
     "    email: marcus.lee@example.com\n    capacty: 20\n"),
    ("salesforce.fields.yaml", "    Call: call_logged\n", "    Call: phoned\n"),
    ("hubspot.fields.yaml", "  quota_guard: 0.9\n", "  quota_guard: 2\n"),
    ("slack.templates.yaml", '"{recipient}, {name} came', '"{recipient}, {nmae} came'),
]


def _line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").mkdir()
    for name in ("policy", "directory", "salesforce.fields", "hubspot.fields", "slack.templates"):
        example = (ROOT / "config" / f"{name}.example.yaml").read_text()
        (tmp_path / "config" / f"{name}.yaml").write_text(example)
    return tmp_path


@pytest.fixture
def refusing_port() -> Iterator[int]:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_one_mistake_per_file_is_listed_sorted_with_its_line(workdir: Path) -> None:
    expected = []
    for name, good, bad in MISTAKES:
        path = workdir / "config" / name
        text = path.read_text()
        assert good in text, (name, "the example changed; update the fixture")
        text = text.replace(good, bad, 1)
        path.write_text(text)
        expected.append(f"config/{name}:{_line_of(text, bad) + bad.rstrip().count(chr(10))}: ")  # its last line
    result = runner.invoke(app, ["check", "--offline"])
    assert result.exit_code == 1, result.output
    problems = [line for line in result.stdout.splitlines() if line.startswith("config/") and ".yaml:" in line
                and not line.split(": ", 1)[1].startswith(("policy OK", "directory OK", "OK"))]
    assert [problem.split(" ", 1)[0] + " " for problem in problems] == sorted(expected), result.stdout
    by_file = {problem.split(":", 1)[0]: problem for problem in problems}
    assert "duplicate key: 'hours' is already set on line 19" in by_file["config/policy.yaml"]
    assert "unknown key 'capacty' (did you mean \"capacity\"?)" in by_file["config/directory.yaml"]
    assert "activities.task_kinds.Call: 'phoned' is not one of" in by_file["config/salesforce.fields.yaml"]
    assert "polling.quota_guard" in by_file["config/hubspot.fields.yaml"]
    assert "unknown field {nmae}" in by_file["config/slack.templates.yaml"]
    assert "5 problem(s)" in result.stderr


def test_a_problem_keeps_its_index_and_line_when_an_earlier_entry_is_broken(workdir: Path) -> None:
    path = workdir / "config" / "policy.yaml"
    text = path.read_text().replace("{id: new.default,       state: NEW, window: 4h}",
                                    "{id: new.default,       state: NEW, window: soon}")
    text = text.replace("{id: new.cold_list,     state: NEW,", "{id: new.cold_list,     state: NEW, market: Mars,")
    path.write_text(text)
    result = runner.invoke(app, ["check", "--offline"])
    assert result.exit_code == 1
    assert f"config/policy.yaml:{_line_of(text, 'new.default')}: windows[0].window" in result.stdout
    # windows[0] failing must not shift the cold list window (windows[3]) to index 2 and line - 1
    assert f"config/policy.yaml:{_line_of(text, 'new.cold_list')}: windows[3].market: unknown market 'Mars'" \
        in result.stdout


def test_fake_credentials_and_unreachable_apis_give_one_line_per_system(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, refusing_port: int) -> None:
    base = f"127.0.0.1:{refusing_port}"
    monkeypatch.setenv("SIDECAR_SF_SESSION_ID", "00Dfake!session")
    monkeypatch.setenv("SIDECAR_SF_INSTANCE_URL", f"https://{base}")
    monkeypatch.setenv("SIDECAR_HUBSPOT_ACCESS_TOKEN", "pat-fake")
    monkeypatch.setenv("SIDECAR_HUBSPOT_API_BASE", f"http://{base}")
    monkeypatch.setenv("SIDECAR_SLACK_BOT_TOKEN", "xoxb-fake")
    monkeypatch.setenv("SIDECAR_SLACK_API_BASE", f"http://{base}/api/")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for system in ("salesforce", "hubspot", "slack"):
        lines = [line for line in result.stdout.splitlines() if line.startswith(f"{system}: ")]
        assert len(lines) == 1, (system, result.stdout)
        assert "cannot reach" in lines[0].lower(), lines[0]
    assert f"hubspot: cannot reach {base}: connection refused" in result.stdout
    assert "config/policy.yaml: policy OK" in result.stdout  # the files were checked all the same


def test_no_crm_is_a_problem_no_slack_a_warning_and_webhook_urls_are_shown(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_PUBLIC_URL", "https://sidecar.example.com/")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "crm: no CRM configured: `sidecar run` will not start" in result.stdout
    assert "warning: slack: not configured" in result.stdout
    assert "webhooks: Salesforce Outbound Message endpoint URL: https://sidecar.example.com/webhooks/salesforce" \
        in result.stdout
    assert "webhooks: HubSpot webhook target URL: https://sidecar.example.com/webhooks/hubspot" in result.stdout


def test_the_webhook_paths_shown_are_the_routes_served(sessions: sessionmaker[Session]) -> None:
    settings = Settings.model_validate({"sf_organization_id": "00D000000000001", "hubspot_app_secret": "s",
                                        "slack_signing_secret": "t"})
    routers = wiring.web_routers(settings, sessions, EngineContext(PolicyBook(), RecordLinks()))
    served = {getattr(route, "path", None) for router in routers for route in router.routes}
    assert {path for _label, path in wiring.webhook_endpoints()} <= served


def test_long_lines_are_not_wrapped_when_piped(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal must not matter when the output is a pipe
    result = runner.invoke(app, ["check", "--offline"])
    line = next(line for line in result.stdout.splitlines() if "policy OK" in line)
    assert len(line) > 40 and line.endswith("rules")


def test_a_refused_token_is_one_line_naming_it(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hubspot = HubSpotEmulator()
    hubspot.start()
    try:
        monkeypatch.setenv("SIDECAR_HUBSPOT_ACCESS_TOKEN", "pat-not-this-portal")
        monkeypatch.setenv("SIDECAR_HUBSPOT_API_BASE", hubspot.url)
        result = runner.invoke(app, ["check"])
    finally:
        hubspot.stop()
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("hubspot: ")]
    assert len(lines) == 1 and "SIDECAR_HUBSPOT_ACCESS_TOKEN refused" in lines[0], result.stdout


def test_teams_routes_are_checked_url_shape_and_reachability(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team on Teams in the directory: each workflow URL it needs is set, shaped right and answers;
    a wrong signature and a missing variable are one line each, and no URL or signature is shown."""
    from connectors.emulators.teams import TeamsWorkflowsEmulator
    from connectors.emulators.tls import make_loopback_tls

    tls = make_loopback_tls(workdir / "tls")
    teams = TeamsWorkflowsEmulator()
    teams.start(ssl_context=tls.server_context)
    try:
        chat, india = teams.add_workflow("chat", kind="chat"), teams.add_workflow("india channel")
        directory = workdir / "config" / "directory.yaml"
        text = directory.read_text()
        directory.write_text(text.replace('    slack_channel: "#sales-india"\n',
                                          '    chat: teams\n    teams_workflow_env: SIDECAR_TEAMS_WORKFLOW_INDIA\n'))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_bundle))
        monkeypatch.setenv("SIDECAR_TEAMS_CHAT_WORKFLOW_URL", chat)
        (workdir / ".env").write_text(f"SIDECAR_TEAMS_WORKFLOW_INDIA={india.replace('sig=', 'sig=0')}\n")
        result = runner.invoke(app, ["check"])
        lines = [line for line in result.stdout.splitlines() if line.startswith("teams: ")]
        assert len(lines) == 2, result.stdout
        assert lines[0].startswith("teams: ok: SIDECAR_TEAMS_CHAT_WORKFLOW_URL reaches the workflow")
        assert "SIDECAR_TEAMS_WORKFLOW_INDIA: Teams refused the URL's signature (HTTP 401)" in lines[1]
        assert "sig=" not in result.stdout and chat.split("sig=")[1] not in result.stdout
        assert teams.cards() == []  # checking never posts a card
        (workdir / ".env").write_text("")
        result = runner.invoke(app, ["check"])
        assert "teams: SIDECAR_TEAMS_WORKFLOW_INDIA is not set" in result.stdout
    finally:
        teams.stop()
