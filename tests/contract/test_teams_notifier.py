"""TeamsNotifier (Workflows webhooks, Adaptive Cards) against the loopback Teams Workflows emulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from connectors.emulators.teams import PAYLOAD_LIMIT, TeamsWorkflowsEmulator
from connectors.teams.cards import CARD_CONTENT_TYPE, PAYLOAD_BUDGET, encode, envelope, payload
from connectors.teams.check import check_workflows
from connectors.teams.notifier import CHAT_URL_ENV, TeamsNotifier, url_problem
from sidecar.domain import Crm, Persona
from sidecar.logs import HumanFormatter, JsonFormatter
from sidecar.notify_routes import RoutedNotifier
from sidecar.ports import LeadContext, Notification, PermanentError, TransientError

AT = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
SF_URL = "https://acme.my.salesforce.com/lightning/r/Lead/00Q5e000001/view"
CHANNEL_ENV = "SIDECAR_TEAMS_WORKFLOW_DACH"
ANA = "ana@nimbus.example"
CONNECTOR_CARD = "application/vnd.microsoft.teams.card.o365connector"  # the retired connectors' MessageCard


def lead(**changes: Any) -> LeadContext:
    base = LeadContext(crm=Crm.SALESFORCE, crm_id="00Q5e000001", name="Jonas Becker", company="Bavaria Motors",
                       market="DACH", source="web_form", intent="high", state="NEW", owner_id="005A1",
                       owner_name="Ana Lima", record_url=SF_URL)
    return replace(base, **changes)


def warning(**changes: Any) -> Notification:
    base = Notification(kind="sla_breach_imminent", persona=Persona.OWNER, via="teams_chat", lead=lead(),
                        rule_id="sla.imminent", policy_version="3f9a1c2", at=AT, due_at=AT + timedelta(minutes=12),
                        elapsed_business_s=3900, window_s=4 * 3600, tz="Europe/Berlin", recipient_email=ANA,
                        recipient_name="Ana Lima", extra={"state_since": (AT - timedelta(hours=2)).isoformat()})
    return replace(base, **changes)


def breach(**changes: Any) -> Notification:
    fields: dict[str, Any] = {"kind": "sla_breach", "persona": Persona.MANAGER, "via": "teams_channel",
                              "channel": CHANNEL_ENV, "rule_id": "sla.breach", "due_at": AT - timedelta(minutes=35),
                              "recipient_email": None, "recipient_name": None}
    return warning(**{**fields, **changes})


@pytest.fixture(scope="module")
def server() -> Iterator[TeamsWorkflowsEmulator]:
    emu = TeamsWorkflowsEmulator(clock=lambda: AT)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emulator(server: TeamsWorkflowsEmulator) -> TeamsWorkflowsEmulator:
    server.reset()
    return server


@pytest.fixture
def urls(emulator: TeamsWorkflowsEmulator) -> dict[str, str]:
    return {CHAT_URL_ENV: emulator.add_workflow("chat", kind="chat"),
            CHANNEL_ENV: emulator.add_workflow("DACH channel", channel="DACH")}


@pytest.fixture
def notifier(urls: dict[str, str]) -> TeamsNotifier:
    return TeamsNotifier(urls.get, dashboard_base="https://sidecar.example.com", allow_http=True)


def facts(card: dict[str, Any]) -> dict[str, str]:
    factset = next(element for element in card["body"] if element["type"] == "FactSet")
    return {fact["title"]: fact["value"] for fact in factset["facts"]}


def test_a_warning_is_an_adaptive_card_in_a_chat_with_the_owner(emulator: TeamsWorkflowsEmulator,
                                                                notifier: TeamsNotifier) -> None:
    ref = notifier.send(warning(), "clock:7/0.8/notify/owner")
    (posted,) = emulator.cards()
    assert ref == "teams:chat:clock:7/0.8/notify/owner"
    assert posted["kind"] == "chat" and posted["recipient"] == ANA and posted["key"] == "clock:7/0.8/notify/owner"
    card = posted["card"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    shown = facts(card)
    assert shown["Lead"] == "Jonas Becker" and shown["Company"] == "Bavaria Motors" and shown["Market"] == "DACH"
    assert shown["Source"] == "web_form" and shown["Intent"] == "high" and shown["Owner"] == "Ana Lima"
    assert shown["State"] == "NEW since 07:30 CET"  # since when, in the recipient's zone (Berlin, winter)
    assert shown["Waiting"] == "1 h 5 min (business time)"
    assert shown["Deadline"] == "09:42 CET · SLA breach in 12 minutes"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in Salesforce", "url": SF_URL}]
    assert "**1 h 5 min**" in card["body"][1]["text"]  # Slack's *bold* as Teams markdown
    assert card["body"][0]["text"].startswith("⚠️ SLA breach in 12 minutes: Jonas Becker")


def test_a_breach_goes_to_the_team_channel_with_the_dashboard_link_for_the_manager(
        emulator: TeamsWorkflowsEmulator, notifier: TeamsNotifier) -> None:
    notifier.send(breach(reassignment=True, kind="sla_breach_auto_reassign",
                         extra={"new_owner_name": "Lena Schulz", "from_owner_name": "Ana Lima",
                                "reason": "no contact within 150 % of the window"}), "k-breach")
    (posted,) = emulator.cards()
    assert posted["kind"] == "channel" and posted["channel"] == "DACH" and posted["recipient"] is None
    urls = [action["url"] for action in posted["card"]["actions"]]
    assert urls == [SF_URL, "https://sidecar.example.com/dashboard/leads/salesforce/00Q5e000001"]
    assert posted["card"]["actions"][1]["title"] == "Review or revert in the dashboard"
    assert facts(posted["card"])["Owner"] == "Lena Schulz"
    assert facts(posted["card"])["Reason"] == "no contact within 150 % of the window"


def test_an_owner_card_has_no_dashboard_link(emulator: TeamsWorkflowsEmulator, notifier: TeamsNotifier) -> None:
    notifier.send(warning(), "k")
    assert [a["url"] for a in emulator.cards()[0]["card"]["actions"]] == [SF_URL]


def test_an_oversized_card_is_clipped_and_accepted_not_refused(emulator: TeamsWorkflowsEmulator,
                                                               notifier: TeamsNotifier, urls: dict[str, str]) -> None:
    huge = warning(lead=lead(name="Jonas " + "B" * 60_000, company="C" * 40_000),
                   extra={"reason": "why " * 20_000})
    unclipped = envelope({"type": "AdaptiveCard", "version": "1.4",
                          "body": [{"type": "TextBlock", "text": huge.lead.name + huge.lead.company}]},
                         key="raw", recipient=ANA)
    # The emulator refuses what does not fit, so the clipping below is what makes it through.
    refused = requests.post(urls[CHAT_URL_ENV], data=encode(unclipped), timeout=10)
    assert refused.status_code == 413 and emulator.cards() == []
    notifier.send(huge, "k-huge")
    (posted,) = emulator.cards()
    assert posted["bytes"] <= PAYLOAD_BUDGET < PAYLOAD_LIMIT
    assert facts(posted["card"])["Lead"].startswith("Jonas BBB") and facts(posted["card"])["Lead"].endswith("…")
    assert posted["card"]["actions"][0]["url"] == SF_URL  # the record link survives the clipping


def test_a_digest_lists_every_lead_with_its_record_link(emulator: TeamsWorkflowsEmulator,
                                                        notifier: TeamsNotifier) -> None:
    leads = [warning(lead=lead(crm_id=f"00Q{i}", name=f"Lead {i}", record_url=f"{SF_URL}?i={i}")) for i in range(3)]
    notifier.send_digest(leads, "digest:abc")
    (posted,) = emulator.cards()
    text = json.dumps(posted["card"], ensure_ascii=False)
    assert posted["recipient"] == ANA and posted["key"] == "digest:abc"
    assert "3 leads need you" in text and all(f"[Lead {i} (Bavaria Motors)]({SF_URL}?i={i})" in text
                                              for i in range(3))


def test_429_is_transient_with_retry_after_and_the_retry_is_recognisable(
        emulator: TeamsWorkflowsEmulator, notifier: TeamsNotifier) -> None:
    emulator.throttle_next(1, retry_after=7)
    with pytest.raises(TransientError) as err:
        notifier.send(warning(), "k-429")
    assert err.value.retry_after == 7.0 and emulator.cards() == []
    notifier.send(warning(), "k-429")
    notifier.send(warning(), "k-429")  # e.g. a retry after a timeout whose 202 never arrived
    assert [(c["key"], c["duplicate"]) for c in emulator.cards()] == [("k-429", False), ("k-429", True)]


def test_server_errors_and_dropped_connections_are_transient(emulator: TeamsWorkflowsEmulator,
                                                             notifier: TeamsNotifier) -> None:
    emulator.faults.add("server_error", next_n=1)
    with pytest.raises(TransientError, match="server error 503"):
        notifier.send(warning(), "k")
    emulator.faults.add("drop", next_n=1)
    with pytest.raises(TransientError, match="unreachable"):
        notifier.send(warning(), "k")


def test_4xx_are_permanent_say_what_to_fix_and_never_show_the_signature(
        emulator: TeamsWorkflowsEmulator, urls: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")  # it logs each request's URL
    chat, channel = urls[CHAT_URL_ENV], urls[CHANNEL_ENV]
    cases = {
        # the channel variable holds the chat workflow's URL: that workflow needs a recipient (400)
        "refused the card (HTTP 400": {CHANNEL_ENV: chat},
        "signature (HTTP 401": {CHANNEL_ENV: channel.replace("sig=", "sig=x")},
        "not found (HTTP 404": {CHANNEL_ENV: channel.replace(channel.split("/workflows/")[1][:8], "0" * 8)},
    }
    for expected, env in cases.items():
        with pytest.raises(PermanentError) as err:
            TeamsNotifier(env.get, allow_http=True).send(breach(), "k")
        message = str(err.value)
        assert expected in message and CHANNEL_ENV in message, message
        assert "sig=" not in message and chat.split("sig=")[1] not in message
    # What reaches the log output (urllib3 logs request URLs at DEBUG) never holds a signature.
    signatures = [url.split("sig=")[1] for url in urls.values()]
    lines = [HumanFormatter().format(record) + JsonFormatter().format(record) for record in caplog.records]
    assert any("sig=" in line for line in lines)  # the URLs were logged: the masking below is what hides them
    assert not any(sig in line for sig in signatures for line in lines)
    assert all(entry["query"].get("sig") in ("***", None) for entry in emulator.log.entries)


def test_a_400_names_the_trigger_and_the_action_to_check(urls: dict[str, str]) -> None:
    with pytest.raises(PermanentError) as err:
        TeamsNotifier({CHANNEL_ENV: urls[CHAT_URL_ENV]}.get, allow_http=True).send(breach(), "k")
    assert "When a Teams webhook request is received" in str(err.value)
    assert "recipient: a chat workflow needs the person's e-mail" in str(err.value)


def test_missing_and_malformed_urls_are_permanent_with_the_variable_to_set(urls: dict[str, str]) -> None:
    with pytest.raises(PermanentError, match=f"{CHANNEL_ENV} is not set"):
        TeamsNotifier({}.get).send(breach(), "k")
    with pytest.raises(PermanentError, match="no sig= signature"):
        TeamsNotifier({CHANNEL_ENV: urls[CHANNEL_ENV].split("&sig=")[0]}.get, allow_http=True).send(breach(), "k")
    with pytest.raises(PermanentError, match="not an https"):
        TeamsNotifier(urls.get).send(breach(), "k")  # production refuses plain http
    with pytest.raises(PermanentError, match="add their email in the directory"):
        TeamsNotifier(urls.get, allow_http=True).send(warning(recipient_email=None), "k")
    real = ("https://prod-12.westeurope.logic.azure.com:443/workflows/0a1b2c/triggers/manual/paths/invoke"
            "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=abc")
    assert url_problem(real) is None and url_problem("https://example.com/hook?sig=1") is not None


def test_the_emulator_refuses_what_teams_refuses(emulator: TeamsWorkflowsEmulator, urls: dict[str, str]) -> None:
    good = payload(breach(), "k")
    bad_bodies = {
        "type must be 'message'": {**good, "type": "card"},
        "exactly one card": {**good, "attachments": good["attachments"] * 2},
        "Adaptive Cards only": {**good, "attachments": [{**good["attachments"][0], "contentType": CONNECTOR_CARD}]},
        "up to 1.5": {**good, "attachments": [{"contentType": CARD_CONTENT_TYPE,
                                               "content": {**good["attachments"][0]["content"], "version": "1.6"}}]},
        "needs a bot": {**good, "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": {
            **good["attachments"][0]["content"], "actions": [{"type": "Action.Submit", "title": "Ack"}]}}]},
        "required property 'text'": {**good, "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": {
            "type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock"}]}}]},
    }
    for expected, body in bad_bodies.items():
        answer = requests.post(urls[CHANNEL_ENV], data=encode(body), timeout=10)
        assert answer.status_code == 400 and expected in answer.json()["error"]["message"], (expected, answer.text)
    ok = requests.post(urls[CHANNEL_ENV], data=encode(good), timeout=10)
    assert ok.status_code == 202 and ok.content == b"" and ok.headers["x-ms-workflow-run-id"]
    assert len(emulator.cards()) == 1


def test_routes_without_a_notifier_dead_letter_with_the_fix(notifier: TeamsNotifier) -> None:
    routed = RoutedNotifier({"teams_chat": notifier}, {"slack_dm": "set SIDECAR_SLACK_BOT_TOKEN"})
    with pytest.raises(PermanentError, match=r"via: slack_dm .*set SIDECAR_SLACK_BOT_TOKEN"):
        routed.send(warning(via="slack_dm"), "k")


def test_check_reports_each_workflow_without_posting(emulator: TeamsWorkflowsEmulator, urls: dict[str, str]) -> None:
    gone = emulator.add_workflow("old channel")
    emulator.remove_workflow(gone)
    results = check_workflows([("chats", CHAT_URL_ENV, urls[CHAT_URL_ENV]),
                               ("team dach", CHANNEL_ENV, urls[CHANNEL_ENV].replace("sig=", "sig=x")),
                               ("team old", "SIDECAR_OLD", gone), ("team new", "SIDECAR_NEW", None),
                               ("team typo", "SIDECAR_TYPO", "https://example.com/webhook")], allow_http=True)
    assert [ok for ok, _ in results] == [True, False, False, False, False]
    assert "signature" in results[1][1] and "HTTP 404" in results[2][1] and "SIDECAR_NEW is not set" in results[3][1]
    assert "Workflows trigger URL" in results[4][1]
    assert all("sig=" not in message for _, message in results)
    assert emulator.cards() == []  # the check never posts


def test_sidecar_run_wires_teams_routes_to_teams_and_slack_routes_to_slack(tmp_path: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    from sidecar import wiring
    from sidecar.settings import Settings

    monkeypatch.chdir(tmp_path)  # no .env, no config/ here
    (tmp_path / ".env").write_text(f"{CHANNEL_ENV}=http://127.0.0.1:9/not-a-workflow\n")
    settings = Settings(_env_file=None, teams_chat_workflow_url=SecretStr("https://example.com/hook?sig=s3cret"))
    notifier = wiring.build_notifier(settings)
    with pytest.raises(PermanentError, match=f"{CHAT_URL_ENV} does not look like a Workflows trigger URL") as err:
        notifier.send(warning(), "k")
    assert "s3cret" not in str(err.value)
    with pytest.raises(PermanentError, match=f"{CHANNEL_ENV} is not an https"):  # read from .env by its name
        notifier.send(breach(), "k")
    with pytest.raises(PermanentError, match="set SIDECAR_SLACK_BOT_TOKEN"):
        notifier.send(warning(via="slack_dm"), "k")
