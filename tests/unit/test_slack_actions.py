"""POST /slack/actions: signature and replay checks, payload parsing, replies (FastAPI TestClient)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI

from connectors.slack.actions import ActionReply, SlackAction, reply_body, slack_actions_router

with warnings.catch_warnings():
    # Starlette 1.x warns at import when its TestClient runs on `httpx` rather than `httpx2`; the
    # project's dev extra pins httpx, which still works, and pytest turns warnings into errors.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_772_425_800  # 2026-03-02T04:30:00Z, the injected clock; never the wall clock
VALUE = json.dumps({"crm": "salesforce", "crm_id": "00Q5e000001", "key": "lead:00Q5e000001/7/0.8"})


def payload(action_id: str = "ack", value: str | None = VALUE, **changes: Any) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "button", "action_id": action_id, "block_id": "sidecar_actions",
                              "action_ts": "1772425790.000100"}
    if value is not None:
        action["value"] = value
    body: dict[str, Any] = {
        "type": "block_actions", "user": {"id": "U0ANA", "username": "ana", "name": "ana", "team_id": "T1"},
        "team": {"id": "T1"}, "channel": {"id": "D0ANA", "name": "directmessage"},
        "container": {"type": "message", "message_ts": "1772425700.000200", "channel_id": "D0ANA"},
        "message": {"ts": "1772425700.000200", "text": "SLA breach in 12 minutes"},
        "response_url": "https://hooks.slack.com/actions/T1/1/abc", "actions": [action],
    }
    return body | changes


def form(data: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(data)}).encode()


def signed(body: bytes, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}


class Recorder:
    def __init__(self, reply: ActionReply) -> None:
        self.reply = reply
        self.actions: list[SlackAction] = []

    def __call__(self, action: SlackAction) -> ActionReply:
        self.actions.append(action)
        return self.reply


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(ActionReply("Got it: you're on Priya Nair."))


def run_now(work: Callable[[], None]) -> None:
    """Runs a click's work before the response, so these tests need no waiting (see the last tests)."""
    work()


@pytest.fixture
def client(recorder: Recorder) -> TestClient:
    app = FastAPI()
    app.include_router(slack_actions_router(SECRET, recorder, clock=lambda: float(NOW), submit=run_now))
    return TestClient(app)


def post(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/slack/actions", content=body, headers=headers)


def test_valid_click_is_parsed_and_passed_on_once(client: TestClient, recorder: Recorder) -> None:
    body = form(payload())
    response = post(client, body, signed(body))
    # Slack ignores the body of the acknowledgement; the reply goes to response_url (clicks.py).
    assert (response.status_code, response.content) == (200, b"")
    assert recorder.actions == [SlackAction(
        action_id="ack", user_id="U0ANA", user_name="ana",
        value={"crm": "salesforce", "crm_id": "00Q5e000001", "key": "lead:00Q5e000001/7/0.8"},
        response_url="https://hooks.slack.com/actions/T1/1/abc", channel_id="D0ANA",
        message_ts="1772425700.000200",
    )]
    action = recorder.actions[0]
    assert (action.crm, action.crm_id, action.idempotency_key) == ("salesforce", "00Q5e000001",
                                                                   "lead:00Q5e000001/7/0.8")


def test_public_reply_does_not_replace_the_original() -> None:
    assert reply_body(ActionReply("Reassignment reverted by ana", ephemeral=False)) == {
        "response_type": "in_channel", "replace_original": False, "text": "Reassignment reverted by ana"}
    assert reply_body(ActionReply("Noted")) == {
        "response_type": "ephemeral", "replace_original": False, "text": "Noted"}


def test_channel_and_ts_fall_back_to_the_container(client: TestClient, recorder: Recorder) -> None:
    data = payload()
    del data["channel"], data["message"]
    body = form(data)
    assert post(client, body, signed(body)).status_code == 200
    assert (recorder.actions[0].channel_id, recorder.actions[0].message_ts) == ("D0ANA", "1772425700.000200")


@pytest.mark.parametrize("headers", [
    pytest.param(lambda body: signed(body, secret="not-the-secret"), id="forged"),
    pytest.param(lambda body: signed(body + b"&x=1"), id="signed-other-body"),
    pytest.param(lambda body: signed(body, timestamp=NOW - 360), id="stale-6-min"),
    pytest.param(lambda body: signed(body, timestamp=NOW + 360), id="future-6-min"),
    pytest.param(lambda body: {**signed(body), "X-Slack-Request-Timestamp": "soon"}, id="bad-timestamp"),
    pytest.param(lambda body: {"Content-Type": "application/x-www-form-urlencoded"}, id="unsigned"),
])
def test_unauthentic_requests_are_401_and_go_nowhere(
    client: TestClient, recorder: Recorder, headers: Any
) -> None:
    body = form(payload())
    response = post(client, body, headers(body))
    assert response.status_code == 401
    assert recorder.actions == []


def test_replay_window_edge_is_inclusive(client: TestClient, recorder: Recorder) -> None:
    body = form(payload())
    assert post(client, body, signed(body, timestamp=NOW - 300)).status_code == 200
    assert post(client, body, signed(body, timestamp=NOW - 301)).status_code == 401
    assert len(recorder.actions) == 1


@pytest.mark.parametrize("body", [
    pytest.param(b"token=abc", id="no-payload-field"),
    pytest.param(urlencode({"payload": "{not json"}).encode(), id="payload-not-json"),
    pytest.param(form(payload(type="view_submission")), id="not-block-actions"),
    pytest.param(form(payload(actions=[])), id="no-actions"),
    pytest.param(form(payload(user={})), id="no-user"),
    pytest.param(form(payload(value="00Q5e000001")), id="value-not-json"),
    pytest.param(form(payload(value=json.dumps({"crm": "salesforce"}))), id="value-missing-keys"),
])
def test_malformed_payloads_are_400(client: TestClient, recorder: Recorder, body: bytes) -> None:
    response = post(client, body, signed(body))
    assert response.status_code == 400
    assert response.json()["error"]
    assert recorder.actions == []


def test_link_button_click_is_acknowledged_without_an_action(client: TestClient, recorder: Recorder) -> None:
    body = form(payload("open_record", value=None))
    response = post(client, body, signed(body))
    assert (response.status_code, response.content) == (200, b"")
    assert recorder.actions == []


def test_non_utf8_body_cannot_be_verified_and_is_401(client: TestClient, recorder: Recorder) -> None:
    # SignatureVerifier hashes the UTF-8 text of the body; Slack only ever sends UTF-8.
    body = b"payload=\xff\xfe"
    assert post(client, body, signed(body)).status_code == 401
    assert recorder.actions == []


def test_the_click_is_acknowledged_before_its_work_runs(recorder: Recorder) -> None:
    # The default submit (a thread pool): a handler that blocks until released cannot hold the 200.
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(action: SlackAction) -> None:
        started.set()
        release.wait(timeout=30)
        recorder(action)
        finished.set()

    app = FastAPI()
    app.include_router(slack_actions_router(SECRET, slow, clock=lambda: float(NOW)))
    body = form(payload())
    try:
        response = post(TestClient(app), body, signed(body))
        assert (response.status_code, response.content) == (200, b"")
        assert not finished.is_set()  # answered while the work was still blocked
    finally:
        release.set()
    assert started.wait(timeout=30) and finished.wait(timeout=30)
    assert [a.action_id for a in recorder.actions] == ["ack"]


def test_a_failing_handler_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(action: SlackAction) -> None:
        raise RuntimeError("database is down")

    app = FastAPI()
    app.include_router(slack_actions_router(SECRET, broken, clock=lambda: float(NOW), submit=run_now))
    body = form(payload())
    assert post(TestClient(app), body, signed(body)).status_code == 200
    assert "button click ack by U0ANA failed" in caplog.text
