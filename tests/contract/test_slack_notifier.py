"""SlackNotifier with the real slack_sdk WebClient against the loopback Slack emulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.emulators.slack import SlackEmulator, SlackError
from connectors.slack.notifier import SlackNotifier, make_client
from sidecar.domain import Crm, Persona
from sidecar.ports import LeadContext, Notification, PermanentError, TransientError

TOKEN = "xoxb-emulator-secret-123"
KEY = "lead:00Q5e000001/clock:7/0.8/notify_owner"
AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
SF_URL = "https://acme.my.salesforce.com/lightning/r/Lead/00Q5e000001/view"
HS_URL = "https://app.hubspot.com/contacts/4242/record/0-1/901"
ANA = "ana@nimbus.example"


class Ticker:
    """Monotonic seconds for the notifier's lookup cache, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lead(crm: Crm = Crm.SALESFORCE) -> LeadContext:
    salesforce = crm is Crm.SALESFORCE
    return LeadContext(crm=crm, crm_id="00Q5e000001" if salesforce else "901", name="Priya Nair",
                       company="Nimbus Labs", market="IN", source="paid_social", intent="high", state="NEW",
                       owner_id="005A1", owner_name="Ana Lima", record_url=SF_URL if salesforce else HS_URL)


def imminent(**changes: Any) -> Notification:
    base = Notification(kind="sla_breach_imminent", persona=Persona.OWNER, via="slack_dm", lead=lead(),
                        rule_id="sla.imminent", policy_version="3f9a1c2", at=AT,
                        due_at=AT + timedelta(minutes=12), elapsed_business_s=3900, window_s=4 * 3600,
                        tz="Asia/Kolkata", recipient_email=ANA, recipient_name="Ana Lima")
    return replace(base, **changes)


def breach(channel: str | None, **changes: Any) -> Notification:
    return imminent(kind="sla_breach", persona=Persona.MANAGER, via="team_channel", channel=channel,
                    rule_id="sla.breach", due_at=AT - timedelta(minutes=35), recipient_email=None,
                    recipient_name=None, **changes)


@pytest.fixture(scope="module")
def server() -> Iterator[SlackEmulator]:
    # One server per module (starting/stopping costs time); every test gets a reset workspace.
    emu = SlackEmulator(clock=lambda: datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), tokens=[TOKEN])
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emulator(server: SlackEmulator) -> SlackEmulator:
    server.reset()
    return server


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def notifier_for(emulator: SlackEmulator, ticker: Ticker) -> Callable[..., SlackNotifier]:
    def build(fallback: str | None = None, token: str = TOKEN) -> SlackNotifier:
        return SlackNotifier(make_client(token, emulator.url + "/api/"), fallback, clock=ticker)
    return build


def calls(emulator: SlackEmulator, method: str) -> list[int]:
    return [e["status"] for e in emulator.log.entries if e["path"] == f"/api/{method}"]


def texts(message: dict[str, Any]) -> str:
    """Everything a person can read in a stored message, for 'contains' checks."""
    return json.dumps(message["blocks"], ensure_ascii=False) + message["text"]


def button_url(message: dict[str, Any]) -> tuple[str, str]:
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    link = next(e for e in actions["elements"] if e["action_id"] == "open_record")
    return link["url"], link["text"]["text"]


@pytest.mark.parametrize(("crm", "url", "label"), [(Crm.SALESFORCE, SF_URL, "Open in Salesforce"),
                                                   (Crm.HUBSPOT, HS_URL, "Open in HubSpot")])
def test_imminent_warning_goes_to_the_owners_dm(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier], crm: Crm, url: str, label: str
) -> None:
    uid = emulator.add_user(ANA, "ana", "Ana Lima")
    ref = notifier_for("sla-fallback").send(imminent(lead=lead(crm)), KEY)
    [message] = emulator.messages()
    [exported] = emulator.export()
    assert (exported["kind"], exported["recipient"]) == ("im", uid)
    assert ref == f"{message['channel']}:{message['ts']}"
    body = texts(message)
    for fact in ("Priya Nair", "Nimbus Labs", "*Market*\\nIN", "*Source*\\npaid_social", "1 h 5 min",
                 "SLA breach in 12 minutes", "10:12 IST"):
        assert fact in body
    assert button_url(message) == (url, label)
    assert message["metadata"] == {"event_type": "sidecar_notification", "event_payload": {"key": KEY}}


def test_breach_goes_to_the_team_channel(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    cid = emulator.add_channel("sales-in")
    ref = notifier_for().send(breach(cid), KEY)
    [message] = emulator.messages(cid)
    assert ref == f"{cid}:{message['ts']}"
    assert message["blocks"][0]["text"]["text"] == ":rotating_light: SLA breached: Priya Nair (Nimbus Labs)"
    assert "overdue by 35 minutes" in texts(message)
    assert message["metadata"]["event_payload"] == {"key": KEY}
    assert calls(emulator, "users.lookupByEmail") == []


def test_unknown_email_falls_back_with_a_mention(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    fallback = emulator.add_channel("sla-fallback")
    ref = notifier_for("sla-fallback").send(imminent(recipient_email="ghost@nimbus.example"), KEY)
    [message] = emulator.messages()
    assert message["channel"] == fallback
    assert ref == f"fallback:{fallback}:{message['ts']}"
    note = message["blocks"][1]["text"]["text"]
    assert note == (":information_source: For *Ana Lima &lt;ghost@nimbus.example&gt;*: posted here because "
                    "no active Slack user has the email ghost@nimbus.example. Add them to Slack "
                    "(or fix their email in the directory) to get DMs.")
    assert message["text"].startswith(note)
    assert message["metadata"]["event_payload"] == {"key": KEY}


def test_missing_email_falls_back_without_a_lookup(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    fallback = emulator.add_channel("sla-fallback")
    ref = notifier_for("#sla-fallback").send(imminent(recipient_email=None), KEY)
    assert ref.startswith(f"fallback:{fallback}:")
    assert "no email is on record for Ana Lima" in emulator.messages()[0]["text"]
    assert calls(emulator, "users.lookupByEmail") == []


def test_no_fallback_channel_is_a_permanent_error_with_the_fix(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    with pytest.raises(PermanentError) as info:
        notifier_for(None).send(imminent(recipient_email="ghost@nimbus.example"), KEY)
    assert "set SIDECAR_SLACK_FALLBACK_CHANNEL or add ghost@nimbus.example to Slack" in str(info.value)
    assert emulator.messages() == []


def test_rate_limit_is_transient_with_retry_after_and_the_retry_delivers_once(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    cid = emulator.add_channel("sales-in")
    notifier = notifier_for()
    emulator.rate_limit_next(1, retry_after=17, method="chat.postMessage")
    with pytest.raises(TransientError) as info:
        notifier.send(breach(cid), KEY)
    assert info.value.retry_after == 17
    assert emulator.messages() == []
    assert calls(emulator, "chat.postMessage") == [429]  # the SDK did not retry on its own
    notifier.send(breach(cid), KEY)  # what the outbox does once its clock passes retry_after
    assert len(emulator.messages()) == 1
    assert calls(emulator, "chat.postMessage") == [429, 200]


def test_rate_limited_lookup_is_transient_and_not_cached_as_a_miss(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    uid = emulator.add_user(ANA, "ana")
    notifier = notifier_for("sla-fallback")
    emulator.rate_limit_next(1, retry_after=3, method="users.lookupByEmail")
    with pytest.raises(TransientError) as info:
        notifier.send(imminent(), KEY)
    assert info.value.retry_after == 3
    notifier.send(imminent(), KEY)
    assert [e["recipient"] for e in emulator.export()] == [uid]


@pytest.mark.parametrize("fault", ["server_error", "drop"])
def test_server_errors_and_dropped_connections_are_transient(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier], fault: str
) -> None:
    cid = emulator.add_channel("sales-in")
    emulator.faults.add(fault, next_n=1)
    with pytest.raises(TransientError) as info:
        notifier_for().send(breach(cid), KEY)
    assert info.value.retry_after is None
    assert emulator.messages() == []
    assert len(emulator.log.entries) == 1  # exactly one attempt: no hidden SDK retry


def _fail_posts_with(code: str) -> Callable[[SlackEmulator, pytest.MonkeyPatch], str]:
    # For errors the emulator has no scenario for, the real HTTP path still carries Slack's envelope.
    def setup(emulator: SlackEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
        def refuse(args: dict[str, Any]) -> dict[str, Any]:
            raise SlackError(code)
        monkeypatch.setattr(emulator, "_api_chat_postMessage", refuse)
        return emulator.add_channel("sales-in")
    return setup


PERMANENT: dict[str, tuple[Callable[[SlackEmulator, pytest.MonkeyPatch], str], str, str]] = {
    # code: (setup returning the channel to post to, token, a fragment of the fix the admin reads)
    "channel_not_found": (lambda emu, mp: "C0GONE404", TOKEN, "C0GONE404 does not exist"),
    "not_in_channel": (lambda emu, mp: emu.add_channel("sales-in", bot_member=False) and "#sales-in", TOKEN,
                       "invite the bot to #sales-in: /invite @sidecar"),
    "is_archived": (_fail_posts_with("is_archived"), TOKEN, "is archived: unarchive it"),
    "account_inactive": (_fail_posts_with("account_inactive"), TOKEN, "reinstall the Slack app"),
    "invalid_auth": (lambda emu, mp: emu.add_channel("sales-in"), "xoxb-revoked-987",
                     "set SIDECAR_SLACK_BOT_TOKEN"),
    "not_authed": (lambda emu, mp: emu.add_channel("sales-in"), "", "set SIDECAR_SLACK_BOT_TOKEN"),
    "user_disabled": (_fail_posts_with("user_disabled"), TOKEN, "is deactivated: update their email"),
    "missing_scope": (_fail_posts_with("missing_scope"), TOKEN, "add it under OAuth & Permissions"),
}


@pytest.mark.parametrize("code", sorted(PERMANENT))
def test_permanent_errors_say_what_to_fix(
    emulator: SlackEmulator, monkeypatch: pytest.MonkeyPatch, ticker: Ticker, code: str
) -> None:
    setup, token, fix = PERMANENT[code]
    channel = setup(emulator, monkeypatch)
    notifier = SlackNotifier(make_client(token, emulator.url + "/api/"), None, clock=ticker)
    with pytest.raises(PermanentError) as info:
        notifier.send(breach(channel), KEY)
    message = str(info.value)
    assert message.startswith(f"{code}: ")
    assert fix in message
    assert token not in message or not token  # never echo a token
    assert emulator.messages() == []


def test_missing_team_channel_names_persona_and_team(notifier_for: Callable[..., SlackNotifier]) -> None:
    with pytest.raises(PermanentError, match="persona manager of team IN-Inbound"):
        notifier_for().send(breach(None, extra={"team": "IN-Inbound"}), KEY)


def test_lookups_are_cached_and_misses_expire_on_the_injected_clock(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier], ticker: Ticker
) -> None:
    emulator.add_channel("sla-fallback")
    notifier = notifier_for("sla-fallback")
    assert notifier.send(imminent(), KEY).startswith("fallback:")
    ticker.now += 299  # within the 5-minute miss TTL: the miss is remembered
    emulator.add_user(ANA, "ana")
    assert notifier.send(imminent(), KEY).startswith("fallback:")
    assert len(calls(emulator, "users.lookupByEmail")) == 1
    ticker.now += 2  # past the TTL: looked up again, now found
    assert notifier.send(imminent(), KEY).startswith("D")
    notifier.send(imminent(), KEY)  # a hit is cached too
    assert len(calls(emulator, "users.lookupByEmail")) == 2


def test_cached_user_deactivated_later_falls_back_instead_of_dead_lettering(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    fallback = emulator.add_channel("sla-fallback")
    uid = emulator.add_user(ANA, "ana")
    notifier = notifier_for("sla-fallback")
    notifier.send(imminent(), KEY)
    emulator.deactivate_user(uid)
    assert notifier.send(imminent(), KEY).startswith(f"fallback:{fallback}:")
    assert len(calls(emulator, "users.lookupByEmail")) == 2


def test_make_client_disables_sdk_retries() -> None:
    client = make_client(TOKEN, "http://127.0.0.1:9/api/")
    assert client.retry_handlers == []
    assert client.base_url == "http://127.0.0.1:9/api/"
    assert make_client(TOKEN).base_url == "https://slack.com/api/"


def test_broken_templates_fail_at_construction(emulator: SlackEmulator) -> None:
    with pytest.raises(ValueError, match=r"unknown field \{lead_name\}"):
        SlackNotifier(make_client(TOKEN, emulator.url + "/api/"), None,
                      templates={"sla_breach.header": "{lead_name}"})


def test_unknown_time_zone_is_a_permanent_config_error(
    emulator: SlackEmulator, notifier_for: Callable[..., SlackNotifier]
) -> None:
    cid = emulator.add_channel("sales-in")
    with pytest.raises(PermanentError, match="unknown time zone 'Mars/Olympus'"):
        notifier_for().send(breach(cid, tz="Mars/Olympus"), KEY)
    assert emulator.messages() == []
