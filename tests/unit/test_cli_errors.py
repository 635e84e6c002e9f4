"""Every condition an admin can cause in their first hour is one line on stderr with the cause and the
fix, exit code 1 (2 for usage), and never a traceback, unless `--debug` asks for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.domain import Crm
from tests.support import apply_policy, context, ingest, ny, policy_raw, snapshot

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
CREDENTIALS = ("SIDECAR_SF_USERNAME", "SIDECAR_SF_CLIENT_ID", "SIDECAR_SF_SESSION_ID", "SIDECAR_SF_INSTANCE_URL",
               "SIDECAR_HUBSPOT_ACCESS_TOKEN", "SIDECAR_HUBSPOT_API_BASE", "SIDECAR_SLACK_BOT_TOKEN",
               "SIDECAR_DATABASE_URL", "SIDECAR_POLICY_FILE", "SIDECAR_WEB_PORT", "SIDECAR_DIRECTORY_FILE")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening (nobody else can take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    env: dict[str, str]
    code: int
    words: tuple[str, ...]  # the cause and the fix, in the one line


def cases(refusing: int, busy: int) -> list[Case]:
    unreachable_hubspot = {"SIDECAR_HUBSPOT_ACCESS_TOKEN": "pat-test", "SIDECAR_HUBSPOT_API_BASE":
                           f"http://127.0.0.1:{refusing}"}
    return [
        Case("unreachable HubSpot API", ["init", "--hubspot"], unreachable_hubspot, 1,
             (f"cannot reach 127.0.0.1:{refusing}: connection refused", "base URL")),
        Case("unreachable Salesforce API", ["backfill", "salesforce"],
             {"SIDECAR_SF_SESSION_ID": "00Dx!session", "SIDECAR_SF_INSTANCE_URL": f"https://127.0.0.1:{refusing}"},
             1, (f"cannot reach 127.0.0.1:{refusing}: connection refused",)),
        Case("backfill without credentials", ["backfill", "salesforce"], {}, 1,
             ("no Salesforce credentials", "SIDECAR_SF_USERNAME")),
        Case("init --hubspot without a token", ["init", "--hubspot"], {}, 1,
             ("needs a HubSpot token", "SIDECAR_HUBSPOT_ACCESS_TOKEN")),
        Case("run on a port in use", ["run"], {"SIDECAR_WEB_PORT": str(busy)}, 1,
             (f"port {busy} is already in use", "SIDECAR_WEB_PORT")),
        Case("demo on a port in use", ["demo", "--port", str(busy)], {}, 1,
             (f"port {busy} is already in use", "--port")),
        Case("PTO ending before it starts", ["directory", "pto", "005rep", "2026-12-05", "2026-12-01"], {}, 1,
             ("2026-12-01) is before the first (2026-12-05)", "YYYY-MM-DD")),
        Case("unknown Salesforce lead", ["revert", "00Q5e000001AbCdEAA"], {}, 1,
             ("no lead 00Q5e000001AbCdEAA", "searched salesforce (guessed from the id's shape)")),
        Case("unknown HubSpot lead", ["revert", "4711"], {}, 1,
             ("no lead 4711", "searched hubspot (guessed from the id's shape)")),
        Case("unknown lead of no known shape", ["revert", "lead-7"], {}, 1,
             ("no lead lead-7", "searched salesforce and hubspot", "pass --crm")),
        Case("unknown lead with --crm", ["revert", "4711", "--crm", "salesforce"], {}, 1,
             ("searched salesforce (given with --crm)",)),
        Case("a date that is not YYYY-MM-DD", ["directory", "pto", "005rep", "2026-13-01", "2026-12-01"], {}, 2,
             ("'2026-13-01' is not a date in the form YYYY-MM-DD", "sidecar directory pto --help")),
        Case("an unknown option", ["check", "--offline", "--colour"], {}, 2, ("No such option", "--help")),
        Case("a bad --crm", ["revert", "4711", "--crm", "pipedrive"], {}, 2, ("--crm must be",)),
    ]


def test_every_expected_condition_is_one_line_with_cause_and_fix(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, refusing_port: int, busy_port: int) -> None:
    for case in cases(refusing_port, busy_port):
        with monkeypatch.context() as patch:
            for name, value in case.env.items():
                patch.setenv(name, value)
            result = runner.invoke(app, case.args, prog_name="sidecar")
        assert result.exit_code == case.code, (case.name, result.output)
        assert "Traceback" not in result.output, case.name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (case.name, result.stderr)
        for words in case.words:
            assert words in lines[0], (case.name, words, lines[0])


def test_debug_shows_the_traceback(workdir: Path, monkeypatch: pytest.MonkeyPatch, refusing_port: int) -> None:
    monkeypatch.setenv("SIDECAR_HUBSPOT_ACCESS_TOKEN", "pat-test")
    monkeypatch.setenv("SIDECAR_HUBSPOT_API_BASE", f"http://127.0.0.1:{refusing_port}")
    result = runner.invoke(app, ["--debug", "init", "--hubspot"])
    assert result.exit_code == 1
    assert result.exception is not None and "network error" in str(result.exception)  # not swallowed


def test_a_real_process_prints_one_line_and_no_traceback(workdir: Path, refusing_port: int) -> None:
    env = {key: value for key, value in os.environ.items() if key not in CREDENTIALS}
    env.update(PYTHONPATH=str(ROOT), SIDECAR_HUBSPOT_ACCESS_TOKEN="pat-test",
               SIDECAR_HUBSPOT_API_BASE=f"http://127.0.0.1:{refusing_port}")
    command = [sys.executable, "-c", "from sidecar.cli import app; app(prog_name='sidecar')"]
    quiet = subprocess.run([*command, "init", "--hubspot"], env=env, cwd=workdir, capture_output=True, text=True,
                           timeout=120, check=False)
    assert quiet.returncode == 1
    assert quiet.stderr.strip().splitlines() == [
        f"error: cannot reach 127.0.0.1:{refusing_port}: connection refused (check the network, a proxy, and "
        "the API's base URL setting; `sidecar check` tests every configured system)"]
    loud = subprocess.run([*command, "--debug", "init", "--hubspot"], env=env, cwd=workdir, capture_output=True,
                          text=True, timeout=120, check=False)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "ConnectionRefusedError" in loud.stderr


def test_revert_finds_a_known_lead_in_whichever_crm_holds_it(
        database_url: str, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_DATABASE_URL", database_url)
    apply_policy(sessions, policy_raw(), ny(24, 9))
    ingest(sessions, context(), snapshot("lead-7", at=ny(24, 9), crm=Crm.HUBSPOT))  # an id of no known shape
    result = runner.invoke(app, ["revert", "lead-7"])
    assert result.exit_code == 1  # found under hubspot, so the revert itself answers
    assert result.stderr.strip() == "error: lead lead-7 was never reassigned by the sidecar"
