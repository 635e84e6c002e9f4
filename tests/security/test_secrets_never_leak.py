"""Secrets never leave the process (issue 15, item 6): every configured secret is a unique sentinel,
and after a failing `sidecar run` (wrong Salesforce password, HubSpot refusing its token, Slack down,
logging at DEBUG in both formats) and after a short demo on the emulators, no sentinel appears in
any log line, any HTTP answer (health, metrics, admin API, dashboard), the audit export, or any row
of any table of the database."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from connectors.emulators.demo import DEMO_START, Demo, DemoOptions
from connectors.emulators.demo_org import DemoOrg
from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import make_loopback_tls
from sidecar import audit
from sidecar.logs import DemoteChatter, HumanFormatter, JsonFormatter
from sidecar.store.db import transaction
from tests.e2e.test_run_process import ROOT, closed_port, sidecar, wait_for

SENTINEL = "S3NT1NEL"


def _secret(prefix: str, name: str) -> str:
    return f"{prefix}{SENTINEL}-{name}-7f3a9c"


SECRETS = {  # shaped like the real thing, so masking by shape is not what saves us
    "SIDECAR_SF_PASSWORD": _secret("", "sfpass"),
    "SIDECAR_SF_SECURITY_TOKEN": _secret("", "sftoken"),
    "SIDECAR_SF_CLIENT_SECRET": _secret("", "sfclient"),
    "SIDECAR_HUBSPOT_ACCESS_TOKEN": _secret("pat-na1-", "hubspot"),
    "SIDECAR_HUBSPOT_APP_SECRET": _secret("", "hsapp"),
    "SIDECAR_SLACK_BOT_TOKEN": _secret("xoxb-", "slack"),
    "SIDECAR_SLACK_SIGNING_SECRET": _secret("", "signing"),
    "SIDECAR_ADMIN_TOKEN": _secret("", "admin"),
    "SIDECAR_SIGNALS_TOKEN": _secret("", "signals"),
    "SIDECAR_DASHBOARD_SECRET": _secret("", "cookie"),
}
VIEWER_TOKEN = _secret("", "viewer")


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """The secrets found in `text`, also as their distinctive core (a secret cut or re-encoded)."""
    found = [name for name, value in secrets.items() if value in text or value.split(SENTINEL)[-1] in text]
    return found + (["sentinel"] if SENTINEL in text and not found else [])


def _database_text(path: Path) -> str:
    with sqlite3.connect(path) as connection:  # every row of every table, as SQL text
        return "\n".join(connection.iterdump())


def _page_texts(http: requests.Session, url: str, paths: list[str], **headers: str) -> Iterator[str]:
    for path in paths:
        answer = http.get(f"{url}{path}", headers=headers, timeout=10)
        yield f"{path} {answer.status_code} {dict(answer.headers)} {answer.text}"


@pytest.mark.slow
def test_a_failing_sidecar_run_leaks_no_secret_anywhere(tmp_path: Path) -> None:
    tls = make_loopback_tls(tmp_path / "ca")
    salesforce = SalesforceEmulator(clock=lambda: datetime.now(UTC))
    port = int(salesforce.start(tls.server_context).rsplit(":", 1)[1].split("/")[0])
    hubspot = HubSpotEmulator(clock=lambda: datetime.now(UTC))  # knows only its own token: ours is refused
    hubspot.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(SECRETS)
    env.update({
        "PYTHONPATH": str(ROOT), "SIDECAR_DATABASE_URL": f"sqlite:///{tmp_path / 'sidecar.db'}",
        "SIDECAR_SF_USERNAME": "integration@example.com", "SIDECAR_SF_ORGANIZATION_ID": salesforce.org_id,
        "SIDECAR_HUBSPOT_API_BASE": hubspot.url, "SIDECAR_HUBSPOT_PORTAL_ID": str(hubspot.portal_id),
        "SIDECAR_SLACK_API_BASE": f"http://127.0.0.1:{closed_port()}/api/",
        "SIDECAR_DASHBOARD_USERS": f"viewer:viewer:{VIEWER_TOKEN}",
        "SIDECAR_WEB_PORT": "0", "SIDECAR_POLL_INTERVAL_SECONDS": "1", "SIDECAR_DISPATCH_INTERVAL_SECONDS": "1",
        "SIDECAR_DIRECTORY_SYNC_INTERVAL_SECONDS": "1", "SIDECAR_BACKOFF_CAP_SECONDS": "2",
        "SIDECAR_LOG_LEVEL": "DEBUG",
    })
    subprocess.run(sidecar("init"), cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    logs: list[Path] = []
    answers: list[str] = []
    try:
        for fmt in ("human", "json"):
            out = tmp_path / f"run-{fmt}.log"
            logs.append(out)
            with out.open("wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "tests.e2e.routed_run", str(port), str(tls.ca_bundle)], cwd=tmp_path,
                    env={**env, "SIDECAR_LOG_FORMAT": fmt}, stdout=sink, stderr=subprocess.STDOUT)
            try:
                web_line = wait_for(lambda out=out: next((line for line in out.read_text().splitlines()
                                                          if "web http" in line), None), "the startup summary")
                url = re.search(r"web (http://[\d.:]+)", web_line).group(1)  # type: ignore[union-attr]
                http = requests.Session()
                http.trust_env = False

                def both_crms_failing(url: str = url, http: requests.Session = http) -> bool:
                    failing = http.get(f"{url}/readyz", timeout=5).json()["failing"]
                    return {f.get("crm") for f in failing if f["job"] == "poll"} >= {"salesforce", "hubspot"}

                wait_for(both_crms_failing, "both CRMs reported failing")
                answers += _page_texts(http, url, ["/healthz", "/readyz", "/metrics", "/openapi.json"])
                answers += _page_texts(http, url, ["/admin/status", "/admin/queue", "/admin/audit"],
                                       Authorization=f"Bearer {SECRETS['SIDECAR_ADMIN_TOKEN']}")
                answers += _page_texts(http, url, ["/api/leads", "/api/audit", "/api/queues"],
                                       Authorization=f"Bearer {VIEWER_TOKEN}")
                answers += _page_texts(http, url, ["/admin/status"], Authorization="Bearer wrong")  # the 401
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    finally:
        salesforce.stop()
        hubspot.stop()
    texts = {str(path.name): path.read_text() for path in logs}
    assert all(len(log.splitlines()) > 5 for log in texts.values()), texts  # DEBUG: plenty was logged
    assert "INVALID_LOGIN" in texts["run-human.log"] or "SIDECAR_SF_PASSWORD" in texts["run-human.log"], texts
    for name, log in texts.items():
        for line in log.splitlines():
            assert not _leaks(line, SECRETS), (name, line)
    for answer in answers:
        assert not _leaks(answer, SECRETS), answer
    export = subprocess.run(sidecar("audit", "export", "--format", "jsonl"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert not _leaks(export.stdout + export.stderr, SECRETS)
    assert not _leaks(_database_text(tmp_path / "sidecar.db"), SECRETS)


@pytest.fixture
def captured_logs() -> Iterator[list[io.StringIO]]:
    """Every record from DEBUG up, through both of the sidecar's formatters."""
    root = logging.getLogger()
    streams = [io.StringIO(), io.StringIO()]
    handlers = []
    for stream, formatter in zip(streams, (HumanFormatter(), JsonFormatter()), strict=True):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(DemoteChatter())
        handlers.append(handler)
        root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield streams
    finally:
        root.setLevel(level)
        for handler in handlers:
            root.removeHandler(handler)


@pytest.mark.slow
def test_a_demo_leaks_no_secret_anywhere(tmp_path: Path, captured_logs: list[io.StringIO]) -> None:
    options = DemoOptions(crm="both", seed=2, scenario=None, policy=None, speed=None,
                          duration=timedelta(hours=16), port=0)
    demo = Demo(options, tmp_path)
    demo.clock.at = DEMO_START + timedelta(hours=13)  # office hours in New York: steps fire
    url = demo.start()
    assert demo.salesforce is not None
    viewer, admin = "demo-viewer-token", "demo-admin-token"
    secrets = {"hubspot token": DEFAULT_TOKEN, "hubspot app secret": DemoOrg.HUBSPOT_APP_SECRET,
               "slack token": DemoOrg.SLACK_TOKEN, "salesforce session": demo.salesforce.access_token,
               "viewer token": viewer, "admin token": admin}
    answers: list[str] = []
    try:
        for minute in range(3 * 60):
            demo.step(minute)
            demo.clock.at += timedelta(minutes=1)
        http = requests.Session()
        http.trust_env = False
        login = http.get(f"{url}/dashboard/login", timeout=10)
        nonce = re.search(r'name="nonce" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
        answer = http.post(f"{url}/dashboard/login", data={"nonce": nonce, "token": admin}, timeout=10)
        answers.append(f"{answer.status_code} {dict(answer.headers)} {answer.text}")
        with transaction(demo.sessions) as session:
            lead = session.execute(text("SELECT crm, crm_id FROM leads LIMIT 1")).one()
        answers += _page_texts(http, url, ["/dashboard/", "/dashboard/leads", "/dashboard/owners", "/dashboard/teams",
                                           "/dashboard/rules", "/dashboard/charts",
                                           f"/dashboard/leads/{lead.crm}/{lead.crm_id}"])
        answers += _page_texts(http, url, ["/api/leads", "/api/clocks", "/api/audit", "/api/queues",
                                           "/api/outcomes", "/metrics", "/healthz", "/readyz"],
                               Authorization=f"Bearer {viewer}")
        with transaction(demo.sessions) as session:
            exports = [*audit.export(session, "jsonl"), *audit.export(session, "csv")]
    finally:
        demo.web.stop()
        demo.close()
    assert any("/dashboard/leads/" in answer and " 200 " in answer for answer in answers), answers[-1][:300]
    for stream in captured_logs:
        lines = stream.getvalue().splitlines()
        assert len(lines) > 50  # the demo logged at DEBUG: requests, jobs, decisions
        for line in lines:
            assert not _leaks(line, secrets), line
    for answer in answers:
        assert not _leaks(answer, secrets), answer[:500]
    assert len(exports) > 10 and not _leaks("".join(exports), secrets)
    assert not _leaks(_database_text(tmp_path / "demo.db"), secrets)


def test_the_leak_check_itself_finds_a_secret(tmp_path: Path) -> None:
    """The greps above would see a secret if one were there (cut, re-encoded in JSON, or in a table)."""
    assert _leaks(f"token={SECRETS['SIDECAR_ADMIN_TOKEN']}", SECRETS) == ["SIDECAR_ADMIN_TOKEN"]
    assert _leaks(json.dumps({"t": SECRETS["SIDECAR_SLACK_BOT_TOKEN"][:15]}), SECRETS) == ["sentinel"]
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (v TEXT)")
        connection.execute("INSERT INTO t VALUES (?)", (SECRETS["SIDECAR_HUBSPOT_ACCESS_TOKEN"],))
    assert _leaks(_database_text(db), SECRETS) == ["SIDECAR_HUBSPOT_ACCESS_TOKEN"]
