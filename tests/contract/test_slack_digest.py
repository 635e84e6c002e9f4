"""A digest of warnings reaches the owner's DM as one message with a line and a link per lead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.emulators.slack import SlackEmulator
from connectors.slack.messages import MAX_BLOCKS, build_digest
from connectors.slack.notifier import SlackNotifier, make_client
from sidecar.domain import Crm, Persona
from sidecar.ports import LeadContext, Notification

AT = datetime(2026, 11, 24, 13, 48, tzinfo=UTC)


def warning(i: int) -> Notification:
    lead = LeadContext(crm=Crm.HUBSPOT, crm_id=str(1000 + i), name=f"Lead {i}", company=f"Company {i}",
                       market="US-East", source="paid_social", intent="high", state="NEW", owner_id="7",
                       owner_name="Ana Lima", record_url=f"https://app.hubspot.com/contacts/1/record/0-1/{1000 + i}")
    return Notification(kind="sla_breach_imminent", persona=Persona.OWNER, via="slack_dm", lead=lead,
                        rule_id="sla.imminent", policy_version="abc123", at=AT, due_at=AT + timedelta(minutes=12),
                        elapsed_business_s=2880, window_s=3600, tz="America/New_York",
                        recipient_email="ana@example.com", recipient_name="Ana Lima", urgent=False)


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    emulator = SlackEmulator(clock=lambda: AT)
    emulator.start()
    yield emulator
    emulator.stop()


def test_digest_goes_to_the_owner_dm_as_one_message(slack: SlackEmulator) -> None:
    user = slack.add_user("ana@example.com", "ana", "Ana Lima")
    notifier = SlackNotifier(make_client("xoxb-emulator", base_url=f"{slack.url}/api/"), None)
    ref = notifier.send_digest([warning(1), warning(2), warning(3)], "digest:k1")
    [message] = slack.export()
    assert ref == f"{message['channel']}:{message['ts']}"
    assert message["kind"] == "im" and message["recipient"] == user
    assert message["metadata"]["event_payload"]["key"] == "digest:k1"
    for i in (1, 2, 3):
        assert f"<https://app.hubspot.com/contacts/1/record/0-1/{1000 + i}|Lead {i} (Company {i})>" in message["text"]
    assert "3 leads need you" in message["blocks"][0]["text"]["text"]
    assert "SLA breach in 12 minutes" in message["text"] and "due 09:00 EST" in message["text"]


def test_a_long_digest_stays_inside_slack_limits_and_counts_the_rest() -> None:
    many = [warning(i) for i in range(60)]
    message = build_digest(many)
    assert len(message.blocks) <= MAX_BLOCKS
    assert message.blocks[-2]["text"]["text"] == "…and 14 more"
