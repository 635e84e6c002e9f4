"""dateTime values written to Salesforce: one formatter (`yyyy-MM-ddTHH:mm:ss.SSSZ`), and an
emulator that refuses what the REST API does not document (microseconds, no offset, no seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.datetimes import api_datetime
from connectors.salesforce.fields import load_field_map
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm
from sidecar.ports import LeadContext, PermanentError, TaskRequest
from tests.conftest import ROOT
from tests.contract.harness import Clock, Serve

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
FIELDS = load_field_map(ROOT / "config" / "salesforce.fields.example.yaml")


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    emulator.add_field("Task", "ReminderDateTime", "datetime")
    emulator.add_field("Task", "IsReminderSet", "boolean")
    emulator.add_field("Task", "Sidecar_Key__c", "string", external_id=True, unique=True)
    return serve(emulator, tls.server_context)


def test_api_datetime_is_utc_with_milliseconds_and_z() -> None:
    assert api_datetime(datetime(2026, 11, 25, 9, 0, 0, 123999, tzinfo=UTC)) == "2026-11-25T09:00:00.123Z"
    assert api_datetime(datetime(2026, 11, 25, 9, 0, tzinfo=UTC)) == "2026-11-25T09:00:00.000Z"
    ist = timezone(timedelta(hours=5, minutes=30))
    assert api_datetime(datetime(2026, 11, 25, 1, 0, 0, 5000, tzinfo=ist)) == "2026-11-24T19:30:00.005Z"
    with pytest.raises(ValueError, match="aware"):
        api_datetime(datetime(2026, 11, 25, 9, 0))


@pytest.mark.parametrize("value", ["2026-11-25T09:00:00.123456+00:00", "2026-11-25T09:00:00.1234567Z",
                                   "2026-11-25T09:00:00", "2026-11-25T09:00Z", "2026-11-25", "tomorrow"])
def test_the_emulator_refuses_an_undocumented_datetime(emu: SalesforceEmulator, client: SalesforceClient,
                                                        value: str) -> None:
    lead = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines"})
    with pytest.raises(PermanentError, match=r"JSON_PARSER_ERROR.*ReminderDateTime"):
        client.rest("POST", "sobjects/Task", json={"WhoId": lead, "Subject": "Call", "ReminderDateTime": value})
    assert emu.records("Task") == []


@pytest.mark.parametrize(("value", "stored"), [
    ("2026-11-25T09:00:00.123Z", "2026-11-25T09:00:00.123+0000"),
    ("2026-11-25T09:00:00Z", "2026-11-25T09:00:00.000+0000"),
    ("2026-11-25T14:30:00.000+05:30", "2026-11-25T09:00:00.000+0000"),
    ("2026-11-25T09:00:00.000+0000", "2026-11-25T09:00:00.000+0000"),
])
def test_the_emulator_takes_the_documented_datetimes(emu: SalesforceEmulator, client: SalesforceClient,
                                                     value: str, stored: str) -> None:
    lead = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines"})
    client.rest("POST", "sobjects/Task", json={"WhoId": lead, "Subject": "Call", "ReminderDateTime": value})
    assert [t["ReminderDateTime"] for t in emu.records("Task")] == [stored]


@pytest.mark.parametrize("upsert", [True, False])
def test_the_writer_sends_reminders_with_milliseconds(emu: SalesforceEmulator, client: SalesforceClient,
                                                      upsert: bool) -> None:
    rep = emu.add_user("Grace", "Hopper")
    lead = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "OwnerId": rep})
    context = LeadContext(Crm.SALESFORCE, lead, "Ada Lovelace", "Engines", "US-East", "web_form", "high",
                          "NEW", rep, None, f"https://acme.my.salesforce.com/lightning/r/Lead/{lead}/view")
    due = datetime(2026, 11, 25, 9, 0, 0, 654321, tzinfo=UTC)  # a computed deadline has microseconds
    writer = SalesforceWriter(client, FIELDS)
    writer.upsert = upsert  # both the upsert (composite) and the plain create path
    writer.create_task(TaskRequest(context, rep, "Call Ada", "First touch overdue", due, "high"), "k1")
    [task] = emu.records("Task")
    assert task["ReminderDateTime"] == "2026-11-25T09:00:00.654+0000"
    sent = [entry["body"] for entry in emu.log.entries if entry["method"] in ("POST", "PATCH")]
    reminders = [_find(body, "ReminderDateTime") for body in sent]
    assert reminders and all(r == "2026-11-25T09:00:00.654Z" for r in reminders if r is not None)
    assert any(r is not None for r in reminders)


def _find(body: object, name: str) -> object:
    """The first value of `name` anywhere in a logged JSON body."""
    if isinstance(body, dict):
        if name in body:
            return body[name]
        body = list(body.values())
    if isinstance(body, list):
        for item in body:
            found = _find(item, name)
            if found is not None:
                return found
    return None


