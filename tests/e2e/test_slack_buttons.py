"""A signed "I'm on it" click goes through the real router, the wiring's handler and the core: the
clicker is identified by e-mail via Slack (only while their Slack id is unknown), the click is audited
once, and the reply is posted to Slack's response_url (Slack ignores a click's response body); Slack
being unreachable delays the reply, never loses the click."""

from __future__ import annotations

import hashlib
import hmac
import json
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.http import Emulator, Response
from connectors.emulators.slack import SlackEmulator
from connectors.slack.actions import slack_actions_router
from sidecar import wiring
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.settings import Settings
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, OutboxRow, Rep
from tests.support import add_team, apply_policy, context, ingest, ny, policy_raw, snapshot

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SECRET = "signing-secret-for-tests"
NOW = ny(24, 8, 50).astimezone(UTC)


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    emulator = SlackEmulator(clock=lambda: NOW)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def replies() -> Iterator[Emulator]:
    receiver = Emulator()
    receiver.router.add("POST", r"/actions/reply", lambda request: Response(200, {"ok": True}))
    receiver.start()
    yield receiver
    receiver.stop()


def click(user: str, key: str, response_url: str) -> tuple[bytes, dict[str, str]]:
    value = json.dumps({"crm": "salesforce", "crm_id": "00Q1", "key": key})
    body = urlencode({"payload": json.dumps({
        "type": "block_actions", "user": {"id": user, "username": "r1", "name": "r1"},
        "channel": {"id": "D1"}, "container": {"message_ts": "1.2", "channel_id": "D1"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": "ack", "value": value, "block_id": "sidecar_actions"}]})}).encode()
    stamp = int(NOW.timestamp())
    digest = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": f"v0={digest}",
                  "Content-Type": "application/x-www-form-urlencoded"}


def run_now(work: Callable[[], None]) -> None:
    work()  # the click's work before the test looks (the router's default is a thread pool)


def notified(sessions: sessionmaker[Session]) -> tuple[EngineContext, str]:
    """A lead whose 80 % warning went out; the notification's idempotency key (the button's)."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, NOW)
    with transaction(sessions) as session:
        key = session.scalars(select(OutboxRow.idempotency_key).where(OutboxRow.action == "notify")).one()
    return ctx, key


def app_for(sessions: sessionmaker[Session], ctx: EngineContext, api_base: str,
            sleeps: list[float] | None = None) -> TestClient:
    settings = Settings(slack_bot_token=SecretStr("xoxb-emulator"), slack_api_base=api_base)
    waits = sleeps if sleeps is not None else []
    handler = wiring.slack_action_handler(sessions, ctx, settings, lambda: NOW, sleep=waits.append)
    app = FastAPI()
    app.include_router(slack_actions_router(SECRET, handler, clock=lambda: NOW.timestamp(), submit=run_now))
    return TestClient(app)


def test_ack_click_is_identified_audited_once_and_answered(
        sessions: sessionmaker[Session], slack: SlackEmulator, replies: Emulator) -> None:
    ctx, key = notified(sessions)
    slack_user = slack.add_user("r1@example.com", "r1", "Rep r1")
    client = app_for(sessions, ctx, f"{slack.url}/api/")
    for _ in range(2):
        body, headers = click(slack_user, key, f"{replies.url}/actions/reply")
        assert client.post("/slack/actions", content=body, headers=headers).status_code == 200
    with transaction(sessions) as session:
        acks = session.scalars(select(AuditRow).where(AuditRow.kind == "notification_acknowledged")).all()
        rep = session.get(Rep, "r1")
        assert rep is not None and rep.slack_user_id == slack_user  # remembered for next time
    assert [(row.actor, row.at) for row in acks] == [("r1", NOW)]
    posted = [entry["body"] for entry in replies.log.entries]
    assert len(posted) == 2 and posted[0]["response_type"] == "ephemeral" and posted[0]["replace_original"] is False
    assert posted[0]["text"] != posted[1]["text"]  # the second click is told it was already noted
    # users.info only for the first click: after it the rep carries the Slack id.
    assert [e["path"] for e in slack.log.entries] == ["/api/users.info"]


def test_unreachable_slack_still_acks_audits_and_replies_later(
        sessions: sessionmaker[Session], slack: SlackEmulator, replies: Emulator) -> None:
    ctx, key = notified(sessions)
    with transaction(sessions) as session:
        rep = session.get(Rep, "r1")
        assert rep is not None
        rep.slack_user_id = "U0R1"  # linked earlier: Slack need not be asked who this is
    api_base = f"{slack.url}/api/"
    slack.stop()  # the Slack Web API is unreachable: no call may be needed, none may fail the click
    replies.faults.add("drop", next_n=1)  # the reply: first a dropped connection...
    replies.faults.add("server_error", next_n=1)  # ...then a 503, then Slack is back
    sleeps: list[float] = []
    client = app_for(sessions, ctx, api_base, sleeps)
    body, headers = click("U0R1", key, f"{replies.url}/actions/reply")
    assert client.post("/slack/actions", content=body, headers=headers).status_code == 200
    with transaction(sessions) as session:
        acks = session.scalars(select(AuditRow).where(AuditRow.kind == "notification_acknowledged")).all()
        assert [(row.actor, row.at) for row in acks] == [("r1", NOW)]
    assert [e["status"] for e in replies.log.entries] == [0, 503, 200]
    assert "Thanks" in replies.log.entries[-1]["body"]["text"]
    assert sleeps == [1.0, 2.0]  # exponential backoff between the tries


@pytest.mark.parametrize("outage", ["server_error", "drop"])
def test_unknown_clicker_while_slack_is_down_is_audited_and_told_to_retry(
        sessions: sessionmaker[Session], slack: SlackEmulator, replies: Emulator, outage: str) -> None:
    ctx, key = notified(sessions)
    slack_user = slack.add_user("r1@example.com", "r1", "Rep r1")
    slack.faults.add(outage, path_prefix="/api/users.info")  # every users.info: a 503, or a dropped connection
    sleeps: list[float] = []
    client = app_for(sessions, ctx, f"{slack.url}/api/", sleeps)
    body, headers = click(slack_user, key, f"{replies.url}/actions/reply")
    assert client.post("/slack/actions", content=body, headers=headers).status_code == 200
    status = 503 if outage == "server_error" else 0
    assert [e["status"] for e in slack.log.entries] == [status] * 5 and sleeps == [1.0, 2.0, 4.0, 8.0]
    with transaction(sessions) as session:
        [refused] = session.scalars(select(AuditRow).where(AuditRow.kind == "action_refused")).all()
        assert refused.details["reason"] == "identity_unavailable" and refused.actor == slack_user
    [reply] = [e["body"] for e in replies.log.entries]
    assert "click again" in reply["text"] and reply["response_type"] == "ephemeral"
