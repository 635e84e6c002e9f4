"""The web app as `sidecar run` builds it from settings: HubSpot signatures behind a reverse proxy
(SIDECAR_PUBLIC_URL), readiness versus liveness."""

from __future__ import annotations

import json
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    # Starlette warns at import when its TestClient runs on `httpx` (what the dev extra pins).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from connectors.emulators.hubspot import sign_v3
from sidecar import wiring
from sidecar.failures import FailureTracker
from sidecar.settings import Settings
from sidecar.store.db import make_engine, session_factory, transaction
from sidecar.store.models import SyncCursor
from sidecar.web.app import create_app
from tests.support import context

SECRET = "hubspot-app-secret"
EVENTS = [{"eventId": 1, "subscriptionId": 2, "subscriptionType": "contact.creation", "objectId": 77,
           "occurredAt": 3}]
# The proxy publishes the sidecar under a path prefix on another host and scheme; inside, the app
# sees http://testserver/webhooks/hubspot.
PUBLIC_BASE = "https://sidecar.example.com/lead-sla"
PUBLIC_HOOK = f"{PUBLIC_BASE}/webhooks/hubspot?portal=42"


def deliver(sessions: sessionmaker[Session], public_url: str | None) -> int:
    settings = Settings(hubspot_app_secret=SecretStr(SECRET), public_url=public_url)
    app = create_app(sessions, wiring.web_routers(settings, sessions, context()))
    body = json.dumps(EVENTS).encode()
    # The receiver checks the timestamp against the wall clock (wiring gives it the real one).
    stamp = str(int(time.time() * 1000))
    headers = {"X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", PUBLIC_HOOK, body, stamp),
               "X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json"}
    return int(TestClient(app).post("/webhooks/hubspot?portal=42", content=body, headers=headers).status_code)


def test_a_signature_over_the_public_url_verifies_behind_a_proxy(sessions: sessionmaker[Session]) -> None:
    assert deliver(sessions, PUBLIC_BASE) == 204
    assert deliver(sessions, PUBLIC_BASE + "/") == 204  # a trailing slash in the setting is harmless


@pytest.mark.parametrize("public_url", [None, "https://other.example.com/lead-sla", "https://sidecar.example.com"])
def test_without_the_right_public_url_the_signature_is_refused(sessions: sessionmaker[Session],
                                                               public_url: str | None) -> None:
    assert deliver(sessions, public_url) == 401


@pytest.mark.parametrize("bad", ["sidecar.example.com", "/webhooks", "ftp://sidecar.example.com",
                                 "https://", "https://sidecar.example.com/?x=1"])
def test_the_public_url_must_be_an_absolute_http_url(bad: str) -> None:
    with pytest.raises(ValidationError, match="SIDECAR_PUBLIC_URL"):
        Settings(public_url=bad)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_PUBLIC_URL", "https://sidecar.example.com/")
    monkeypatch.setenv("SIDECAR_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("SIDECAR_POLL_INTERVAL_SECONDS", "30")
    settings = Settings()
    assert settings.public_url == "https://sidecar.example.com" and settings.web_host == "0.0.0.0"
    assert settings.job_intervals()["poll"] == 30
    assert settings.public_endpoint("/webhooks/salesforce", "http://127.0.0.1:8080") == \
        "https://sidecar.example.com/webhooks/salesforce"
    assert Settings().web_host == "0.0.0.0" and Settings(_env_file=None).log_format == "human"


def test_readiness_reports_the_failing_crm_and_since_when_while_liveness_stays_ok(
        sessions: sessionmaker[Session]) -> None:
    tracker = FailureTracker({"poll": timedelta(minutes=1)})
    client = TestClient(create_app(sessions, [], tracker))
    assert client.get("/readyz").status_code == 200 and client.get("/readyz").json() == {"ready": True, "failing": []}
    since = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    tracker.failed("poll", "salesforce", since, ConnectionRefusedError("refused"))
    answer = client.get("/readyz")
    assert answer.status_code == 503
    [failing] = answer.json()["failing"]
    assert failing["crm"] == "salesforce" and failing["job"] == "poll" and failing["since"] == since.isoformat()
    assert failing["cause"] == "cannot reach the API (connection refused)"
    assert client.get("/healthz").status_code == 200
    tracker.succeeded("poll", "salesforce", since + timedelta(minutes=1))
    assert client.get("/readyz").status_code == 200


def test_readiness_fails_when_the_last_good_poll_is_stale_or_the_database_cannot_be_read(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Polls stopped (e.g. the scheduler died) without any failure to report: the poll's age tells."""
    now = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    with transaction(sessions) as session:
        for crm, age in (("hubspot", 20), ("salesforce", 5), ("other", None)):  # "other": never polled yet
            at = now - timedelta(minutes=age) if age is not None else None
            session.add(SyncCursor(crm=crm, stream="leads", cursor_at=None, last_poll_at=at))
    tracker = FailureTracker({"poll": timedelta(minutes=1)})
    client = TestClient(create_app(sessions, [], tracker, clock=lambda: now, poll_stale_after=timedelta(minutes=15)))
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert [(f["job"], f["crm"], f["since"], f["cause"]) for f in answer.json()["failing"]] == [
        ("poll", "hubspot", (now - timedelta(minutes=20)).isoformat(),
         "no successful poll for 20 min (the poll job is not running?)")]
    tracker.failed("poll", "hubspot", now - timedelta(minutes=19), ConnectionRefusedError("refused"))
    [failing] = client.get("/readyz").json()["failing"]  # said once, by the failing poll itself
    assert failing["cause"] == "cannot reach the API (connection refused)"
    fresh = TestClient(create_app(sessions, [], None, clock=lambda: now, poll_stale_after=timedelta(minutes=30)))
    assert fresh.get("/readyz").json() == {"ready": True, "failing": []}
    unmigrated = session_factory(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    broken = TestClient(create_app(unmigrated, []))
    answer = broken.get("/readyz")
    assert answer.status_code == 503
    [database] = answer.json()["failing"]
    assert database["job"] == "database" and database["cause"].startswith("cannot read the database: no such table")


def test_log_level_and_format_are_checked() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(ValidationError, match="SIDECAR_LOG_LEVEL"):
        Settings(log_level="LOUD")
    with pytest.raises(ValidationError, match="log_format"):
        Settings(log_format="xml")
