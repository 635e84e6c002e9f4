"""The Slack emulator refuses Block Kit beyond Slack's limits, with Slack's invalid_blocks answer
(the real slack_sdk.WebClient over loopback HTTP); exactly at each limit it accepts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connectors.emulators.slack import SlackEmulator

Blocks = Callable[[int], list[dict[str, Any]]]  # n characters/items -> blocks


@pytest.fixture(scope="module")
def emulator() -> Iterator[SlackEmulator]:
    emu = SlackEmulator()
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def client(emulator: SlackEmulator) -> WebClient:
    emulator.reset()
    emulator.add_channel("sla-alerts")
    return WebClient(token="xoxb-emulator", base_url=emulator.url + "/api/", retry_handlers=[])


def plain(n: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": "x" * n}


def mrkdwn(n: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": "y" * n}


def button(text: int = 2, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": "ack", "text": plain(text), **extra}


CONFIRM = {"title": plain(5), "text": mrkdwn(5), "confirm": plain(5), "deny": plain(5)}

# (name, limit, blocks with n, the JSON pointer and kind of the refusal at limit + 1)
CASES: list[tuple[str, int, Blocks, str]] = [
    ("blocks", 50, lambda n: [{"type": "divider"}] * n, "items allowed [json-pointer:/blocks]"),
    ("header", 150, lambda n: [{"type": "header", "text": plain(n)}],
     "characters [json-pointer:/blocks/0/text/text]"),
    ("section", 3000, lambda n: [{"type": "section", "text": mrkdwn(n)}],
     "characters [json-pointer:/blocks/0/text/text]"),
    ("fields", 10, lambda n: [{"type": "section", "fields": [mrkdwn(1)] * n}],
     "items allowed [json-pointer:/blocks/0/fields]"),
    ("field", 2000, lambda n: [{"type": "section", "fields": [mrkdwn(1), mrkdwn(n)]}],
     "characters [json-pointer:/blocks/0/fields/1/text]"),
    ("actions", 25, lambda n: [{"type": "actions", "elements": [button()] * n}],
     "items allowed [json-pointer:/blocks/0/elements]"),
    ("button", 75, lambda n: [{"type": "actions", "elements": [button(n)]}],
     "characters [json-pointer:/blocks/0/elements/0/text/text]"),
    ("context", 10, lambda n: [{"type": "context", "elements": [mrkdwn(1)] * n}],
     "items allowed [json-pointer:/blocks/0/elements]"),
    ("confirm text", 300, lambda n: [{"type": "actions", "elements": [
        button(confirm={**CONFIRM, "text": mrkdwn(n)})]}],
     "characters [json-pointer:/blocks/0/elements/0/confirm/text/text]"),
    ("button value", 2000, lambda n: [{"type": "actions", "elements": [button(value="v" * n)]}],
     "characters [json-pointer:/blocks/0/elements/0/value]"),
]


@pytest.mark.parametrize(("name", "limit", "blocks", "where"), CASES, ids=[c[0] for c in CASES])
def test_each_limit_is_enforced_like_slack(client: WebClient, emulator: SlackEmulator, name: str,
                                           limit: int, blocks: Blocks, where: str) -> None:
    client.chat_postMessage(channel="sla-alerts", text="at the limit", blocks=blocks(limit))
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="sla-alerts", text="over the limit", blocks=blocks(limit + 1))
    answer = refused.value.response
    assert answer.status_code == 200 and answer["ok"] is False and answer["error"] == "invalid_blocks"
    kind = "characters" if "characters" in where else "items"
    expected = (f"must be less than {limit + 1} {where}" if kind == "characters"
                else f"no more than {limit} {where}")
    assert answer["errors"] == [expected]
    assert answer["response_metadata"]["messages"] == [f"[ERROR] {expected}"]
    assert [m["text"] for m in emulator.messages()] == ["at the limit"]  # nothing of the refused one


def test_update_and_ephemeral_are_checked_too(client: WebClient, emulator: SlackEmulator) -> None:
    posted = client.chat_postMessage(channel="sla-alerts", text="ok")
    too_long = [{"type": "header", "text": plain(151)}]
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        client.chat_update(channel=posted["channel"], ts=posted["ts"], text="edit", blocks=too_long)
    assert [m["text"] for m in emulator.messages()] == ["ok"]


def test_every_problem_is_listed(client: WebClient) -> None:
    blocks = [{"type": "header", "text": plain(151)}, {"type": "section", "text": mrkdwn(3001)}]
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="sla-alerts", text="two problems", blocks=blocks)
    assert refused.value.response["errors"] == [
        "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        "must be less than 3001 characters [json-pointer:/blocks/1/text/text]"]
