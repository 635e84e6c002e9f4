"""Long lead data never gets a notification refused: the notifier's messages stay inside the Block Kit
limits that the Slack emulator enforces like Slack (slack_blocks.py), for every kind of message."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connectors.emulators.slack import SlackEmulator
from connectors.emulators.slack_blocks import block_errors
from connectors.slack.messages import build_digest, build_message
from connectors.slack.notifier import SlackNotifier, make_client
from sidecar.domain import Crm, Persona
from sidecar.ports import LeadContext, Notification

TOKEN = "xoxb-emulator"
AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
LONG = "Ünïcode & <Co> " * 400  # 6,000 characters; escaping makes the mrkdwn copies longer still


def long_lead(n: int = 0) -> LeadContext:
    return LeadContext(crm=Crm.SALESFORCE, crm_id=f"00Q5e{n:06d}", name=f"{n} {LONG}", company=LONG, market=LONG,
                       source=LONG, intent=LONG, state=LONG, owner_id="005A1", owner_name=LONG,
                       record_url=f"https://acme.my.salesforce.com/lightning/r/Lead/00Q5e{n:06d}/view")


def notification(kind: str, via: str = "team_channel", n: int = 0) -> Notification:
    return Notification(kind=kind, persona=Persona.MANAGER, via=via, lead=long_lead(n),  # type: ignore[arg-type]
                        rule_id="sla." + "r" * 300, policy_version="v" * 300, at=AT,
                        due_at=AT + timedelta(minutes=12), elapsed_business_s=3900, window_s=4 * 3600,
                        tz="Asia/Kolkata", recipient_email="ana@nimbus.example", recipient_name=LONG,
                        channel="sla-alerts",
                        extra={"new_owner_name": LONG, "from_owner_name": LONG, "reason": LONG,
                               "state_since": LONG, "snooze_allowed": True})


@pytest.fixture(scope="module")
def server() -> Iterator[SlackEmulator]:
    emu = SlackEmulator(clock=lambda: AT, tokens=[TOKEN])
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def notifier(server: SlackEmulator) -> SlackNotifier:
    server.reset()
    server.add_channel("sla-alerts")
    server.add_user("ana@nimbus.example", "ana", "Ana Lima")
    return SlackNotifier(make_client(TOKEN, server.url + "/api/"), "sla-alerts")


@pytest.mark.parametrize("kind", ["sla_breach_imminent", "sla_breach", "sla_breach_auto_reassign", "custom"])
@pytest.mark.parametrize("via", ["team_channel", "slack_dm"])
def test_a_message_about_a_lead_with_huge_fields_is_accepted(
        notifier: SlackNotifier, server: SlackEmulator, kind: str, via: str) -> None:
    n = notification(kind, via)
    assert block_errors(build_message(n, "key-1", fallback_note=LONG).blocks) == []
    notifier.send(n, "key-1")
    [message] = server.messages()
    assert block_errors(message["blocks"]) == []
    header = next(b for b in message["blocks"] if b["type"] == "header")["text"]["text"]
    assert header.endswith("…")  # clipped, visibly


def test_a_digest_of_many_long_leads_is_accepted(notifier: SlackNotifier, server: SlackEmulator) -> None:
    batch = [replace(notification("sla_breach_imminent", "slack_dm", i), urgent=False) for i in range(60)]
    assert block_errors(build_digest(batch, LONG).blocks) == []
    notifier.send_digest(batch, "digest-1")
    [message] = server.messages()
    assert block_errors(message["blocks"]) == [] and len(message["blocks"]) <= 50
    first = next(b for b in message["blocks"] if b["type"] == "section" and "00Q5e000000" in b["text"]["text"])
    text = first["text"]["text"]
    assert text.count("<https://") == 1 and "|" in text and ">*" in text  # the link survived clipping whole


@pytest.mark.parametrize("url_length", [1_600, 3_001])
def test_overlong_record_urls_are_left_out_not_refused(
        notifier: SlackNotifier, server: SlackEmulator, url_length: int) -> None:
    n = notification("sla_breach")
    long_url = "https://acme.my.salesforce.com/lightning/r/Lead/00Q5e000000/view?" + "q" * url_length
    n = replace(n, lead=replace(n.lead, record_url=long_url))
    notifier.send(n, "key-1")
    notifier.send_digest([replace(n, via="slack_dm", urgent=False)] * 2, "digest-1")
    messages = server.messages()
    assert len(messages) == 2 and all(block_errors(m["blocks"]) == [] for m in messages)
    digest_lines = [b["text"]["text"] for b in messages[1]["blocks"] if b["type"] == "section"]
    assert not any("<https://" in line for line in digest_lines)  # no link that could be cut open
