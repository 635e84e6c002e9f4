"""Contract tests: the real slack_sdk.WebClient against the Slack emulator over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from connectors.emulators.slack import SlackEmulator

TOKEN = "xoxb-emulator"
BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Lead* `00Q1` breaches in 5 min"}},
    {"type": "actions", "elements": [{"type": "button", "action_id": "ack", "value": "00Q1",
                                      "text": {"type": "plain_text", "text": "Ack ✅"}}]},
]
METADATA: dict[str, Any] = {
    "event_type": "lead_sla_warning", "event_payload": {"lead_id": "00Q1", "minutes_left": 5},
}


class FakeClock:
    """Virtual time for the emulator: frozen unless a test advances it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.now = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # epoch 1700000000

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SlackEmulator, FakeClock]]:
    # One server for the module (stopping one costs ~0.5 s); each test gets a reset workspace.
    clock = FakeClock()
    emu = SlackEmulator(clock=clock, tokens=[TOKEN])
    emu.start()
    yield emu, clock
    emu.stop()


@pytest.fixture
def clock(server: tuple[SlackEmulator, FakeClock]) -> FakeClock:
    server[1].reset()
    return server[1]


@pytest.fixture
def emulator(server: tuple[SlackEmulator, FakeClock], clock: FakeClock) -> SlackEmulator:
    server[0].reset()
    return server[0]


def client_for(emulator: SlackEmulator, token: str | None = TOKEN, **kwargs: object) -> WebClient:
    return WebClient(token=token, base_url=emulator.url + "/api/", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def client(emulator: SlackEmulator) -> WebClient:
    return client_for(emulator)


def error_of(call: object) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()  # type: ignore[operator]
    return info.value


def statuses(emulator: SlackEmulator, method: str) -> list[int]:
    return [e["status"] for e in emulator.log.entries if e["path"] == f"/api/{method}"]


# ---- auth ----

def test_auth_test_identifies_the_bot(emulator: SlackEmulator, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["user_id"] == emulator.bot_user_id
    assert resp["team_id"] == emulator.team_id


def test_unknown_token_is_invalid_auth(emulator: SlackEmulator) -> None:
    err = error_of(client_for(emulator, "xoxb-wrong").auth_test)
    assert err.response["error"] == "invalid_auth"
    assert err.response.status_code == 200


def test_missing_token_is_not_authed(emulator: SlackEmulator) -> None:
    assert error_of(client_for(emulator, None).auth_test).response["error"] == "not_authed"


def test_expired_session_fault_is_invalid_auth_once(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.faults.add("expired_session", next_n=1)
    assert error_of(client.auth_test).response["error"] == "invalid_auth"
    assert client.auth_test()["ok"] is True


# ---- users ----

def test_lookup_by_email_found_and_not_found(emulator: SlackEmulator, client: WebClient) -> None:
    uid = emulator.add_user("ana@example.com", "ana", "Ana Lima")
    user = client.users_lookupByEmail(email="ANA@example.com")["user"]
    assert (user["id"], user["real_name"], user["profile"]["email"]) == (uid, "Ana Lima", "ana@example.com")
    err = error_of(lambda: client.users_lookupByEmail(email="nobody@example.com"))
    assert err.response["error"] == "users_not_found"


def test_deactivated_user_is_hidden_from_lookup_but_in_users_info(
    emulator: SlackEmulator, client: WebClient
) -> None:
    uid = emulator.add_user("gone@example.com", "gone", deleted=True)
    err = error_of(lambda: client.users_lookupByEmail(email="gone@example.com"))
    assert err.response["error"] == "users_not_found"
    assert client.users_info(user=uid)["user"]["deleted"] is True
    assert error_of(lambda: client.users_info(user="U404")).response["error"] == "user_not_found"
    assert error_of(lambda: client.conversations_open(users=uid)).response["error"] == "user_disabled"


def test_missing_required_argument_is_invalid_arguments(client: WebClient) -> None:
    err = error_of(lambda: client.api_call("users.lookupByEmail", params={}))
    assert err.response["error"] == "invalid_arguments"
    assert "email" in err.response["response_metadata"]["messages"][0]


# ---- posting ----

def test_dm_via_conversations_open_then_post(emulator: SlackEmulator, client: WebClient) -> None:
    uid = emulator.add_user("ana@example.com", "ana")
    dm = client.conversations_open(users=uid)["channel"]["id"]
    assert dm.startswith("D")
    assert client.conversations_open(users=[uid])["channel"]["id"] == dm  # idempotent
    resp = client.chat_postMessage(channel=dm, text="Lead 00Q1 is yours")
    assert resp["channel"] == dm
    [exported] = emulator.export()
    assert (exported["kind"], exported["recipient"], exported["text"]) == ("im", uid, "Lead 00Q1 is yours")


def test_posting_to_a_user_id_lands_in_their_dm(emulator: SlackEmulator, client: WebClient) -> None:
    uid = emulator.add_user("ana@example.com", "ana")
    resp = client.chat_postMessage(channel=uid, text="hi")
    assert resp["channel"].startswith("D")
    assert client.conversations_open(users=uid)["channel"]["id"] == resp["channel"]
    assert [m["text"] for m in emulator.messages(resp["channel"])] == ["hi"]


def test_dm_with_user_deactivated_later_is_refused(emulator: SlackEmulator, client: WebClient) -> None:
    uid = emulator.add_user("ana@example.com", "ana")
    dm = client.conversations_open(users=uid)["channel"]["id"]
    emulator.deactivate_user(uid)
    post = client.chat_postMessage
    assert error_of(lambda: post(channel=dm, text="x")).response["error"] == "is_archived"
    assert error_of(lambda: post(channel=uid, text="x")).response["error"] == "user_disabled"
    assert emulator.messages() == []


def test_channel_post_by_id_and_by_name(emulator: SlackEmulator, client: WebClient) -> None:
    cid = emulator.add_channel("sales-escalations")
    assert client.chat_postMessage(channel=cid, text="one")["channel"] == cid
    assert client.chat_postMessage(channel="#sales-escalations", text="two")["channel"] == cid
    assert [m["text"] for m in emulator.messages(cid)] == ["one", "two"]
    assert {e["kind"] for e in emulator.export()} == {"channel"}


def test_not_in_channel_and_channel_not_found(emulator: SlackEmulator, client: WebClient) -> None:
    public = emulator.add_channel("general", bot_member=False)
    private = emulator.add_channel("secret", bot_member=False, private=True)
    post = client.chat_postMessage
    assert error_of(lambda: post(channel=public, text="x")).response["error"] == "not_in_channel"
    assert error_of(lambda: post(channel=private, text="x")).response["error"] == "channel_not_found"
    assert error_of(lambda: post(channel="C404", text="x")).response["error"] == "channel_not_found"
    assert emulator.messages() == []


def test_text_or_blocks_required(emulator: SlackEmulator, client: WebClient) -> None:
    cid = emulator.add_channel("general")
    # The SDK itself warns (UserWarning) whenever `text` is absent; the server's answer is what we test.
    with pytest.warns(UserWarning, match="text"):
        assert error_of(lambda: client.chat_postMessage(channel=cid)).response["error"] == "no_text"
    with pytest.warns(UserWarning, match="text"):
        client.chat_postMessage(channel=cid, blocks=BLOCKS)  # blocks alone are enough
    assert len(emulator.messages(cid)) == 1


def test_blocks_metadata_and_thread_stored_exactly(emulator: SlackEmulator, client: WebClient) -> None:
    cid = emulator.add_channel("general")
    parent = client.chat_postMessage(channel=cid, text="parent")["ts"]
    resp = client.chat_postMessage(channel=cid, text="fallback", blocks=BLOCKS, metadata=METADATA,
                                   thread_ts=parent)
    stored = emulator.messages(cid)[1]
    assert stored["blocks"] == BLOCKS
    assert stored["metadata"] == METADATA
    assert stored["thread_ts"] == parent
    assert stored["user"] == emulator.bot_user_id
    assert resp["message"]["blocks"] == BLOCKS


def test_form_encoded_blocks_are_decoded(emulator: SlackEmulator, client: WebClient) -> None:
    # api_call(params=...) is the SDK's form-encoded path: blocks travel as a JSON string.
    cid = emulator.add_channel("general")
    client.api_call("chat.postMessage", params={"channel": cid, "blocks": json.dumps(BLOCKS)})
    assert emulator.messages(cid)[0]["blocks"] == BLOCKS
    err = error_of(lambda: client.api_call("chat.postMessage", params={"channel": cid, "blocks": "[oops"}))
    assert err.response["error"] == "invalid_blocks_format"


def test_ts_unique_and_increasing_on_a_frozen_clock(
    emulator: SlackEmulator, client: WebClient, clock: FakeClock
) -> None:
    cid = emulator.add_channel("general")
    first = client.chat_postMessage(channel=cid, text="a")["ts"]
    second = client.chat_postMessage(channel=cid, text="b")["ts"]
    assert first == "1700000000.000000"
    assert second == "1700000000.000001"
    clock.advance(90)
    assert client.chat_postMessage(channel=cid, text="c")["ts"] == "1700000090.000000"


def test_chat_update_changes_text_and_keeps_blocks(emulator: SlackEmulator, client: WebClient) -> None:
    cid = emulator.add_channel("general")
    ts = client.chat_postMessage(channel=cid, text="breach soon", blocks=BLOCKS)["ts"]
    resp = client.chat_update(channel=cid, ts=ts, text="acknowledged")
    assert resp["text"] == "acknowledged"
    [stored] = emulator.messages(cid)
    assert (stored["text"], stored["blocks"], stored["ts"]) == ("acknowledged", BLOCKS, ts)
    assert stored["edited"] is not None


def test_chat_update_errors(emulator: SlackEmulator, client: WebClient) -> None:
    cid = emulator.add_channel("general")
    uid = emulator.add_user("ana@example.com", "ana")
    human_ts = emulator.add_message(cid, "written by a person", user=uid)
    err = error_of(lambda: client.chat_update(channel=cid, ts="1.000001", text="x"))
    assert err.response["error"] == "message_not_found"
    err = error_of(lambda: client.chat_update(channel=cid, ts=human_ts, text="x"))
    assert err.response["error"] == "cant_update_message"
    assert emulator.messages(cid)[0]["text"] == "written by a person"


def test_post_ephemeral_requires_membership(emulator: SlackEmulator, client: WebClient) -> None:
    member = emulator.add_user("ana@example.com", "ana")
    outsider = emulator.add_user("bo@example.com", "bo")
    cid = emulator.add_channel("general", members=[member])
    ts = client.chat_postEphemeral(channel=cid, user=member, text="only you")["message_ts"]
    assert emulator.messages(cid)[0]["ephemeral_to"] == member
    err = error_of(lambda: client.chat_postEphemeral(channel=cid, user=outsider, text="x"))
    assert err.response["error"] == "user_not_in_channel"
    # Ephemeral messages are not editable with chat.update.
    err = error_of(lambda: client.chat_update(channel=cid, ts=ts, text="x"))
    assert err.response["error"] == "message_not_found"


# ---- rate limits and server faults ----

def test_rate_limit_retried_by_sdk_handler_delivers_once(
    emulator: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's handler sleeps int(Retry-After) + random(); record the sleep instead of waiting.
    slept: list[float] = []
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=slept.append))
    cid = emulator.add_channel("general")
    emulator.rate_limit_next(1, retry_after=7, method="chat.postMessage")
    client = client_for(emulator, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    assert client.chat_postMessage(channel=cid, text="once")["ok"] is True
    assert [m["text"] for m in emulator.messages()] == ["once"]
    assert statuses(emulator, "chat.postMessage") == [429, 200]
    assert len(slept) == 1 and 7 <= slept[0] < 8


def test_rate_limit_without_handler_raises_with_retry_after(
    emulator: SlackEmulator, client: WebClient
) -> None:
    cid = emulator.add_channel("general")
    emulator.rate_limit_next(1, retry_after=30)
    err = error_of(lambda: client.chat_postMessage(channel=cid, text="x"))
    assert err.response.status_code == 429
    assert err.response["error"] == "ratelimited"
    assert err.response.headers["Retry-After"] == "30"
    assert emulator.messages() == []


def test_per_channel_post_interval_on_virtual_time(
    emulator: SlackEmulator, client: WebClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulator, "post_interval", 1.0)
    busy, quiet = emulator.add_channel("busy"), emulator.add_channel("quiet")
    client.chat_postMessage(channel=busy, text="1")
    err = error_of(lambda: client.chat_postMessage(channel=busy, text="2"))
    assert (err.response.status_code, err.response.headers["Retry-After"]) == (429, "1")
    client.chat_postMessage(channel=quiet, text="other channel is not throttled")
    clock.advance(1)
    client.chat_postMessage(channel=busy, text="3")
    assert [m["text"] for m in emulator.messages(busy)] == ["1", "3"]


def test_server_error_fault_is_503(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.faults.add("server_error", next_n=1)
    err = error_of(client.auth_test)
    assert err.response.status_code == 503
    assert client.auth_test()["ok"] is True
    assert statuses(emulator, "auth.test") == [503, 200]
