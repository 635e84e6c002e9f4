"""Contract tests for the first-response task's life in each CRM: `update_task` re-owns or closes the
sidecar's task (found by its key) and leaves a completed one alone; readers report the completion of
a first-response task as its own progress kind; the emulators refuse what the real APIs refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.engagements import EngagementReader
from connectors.hubspot.errors import Rejected
from connectors.hubspot.fields import FieldMap as HubSpotFields
from connectors.hubspot.writer import KEY_PROPERTY, HubSpotWriter
from connectors.salesforce.auth import SalesforceCredentials, connect
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.fields import FieldMap
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm, ProgressKind
from sidecar.ports import Cursor, LeadContext, PermanentError, TaskRequest, TaskUpdate, TransientError
from tests.contract.harness import Clock, Serve
from tests.contract.test_salesforce_connector import add_standard_task_fields

START = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
KEY = "first-response:lead:7:task:owner"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def lead_context(crm: Crm, lead_id: str, owner: str) -> LeadContext:
    return LeadContext(crm, lead_id, "Ada Lovelace", "Engines", "US-East", "web_form", "high", "NEW", owner, None,
                       f"https://example.test/{lead_id}")


def request(crm: Crm, lead_id: str, owner: str) -> TaskRequest:
    return TaskRequest(lead_context(crm, lead_id, owner), owner, "First response: Ada Lovelace (Engines)", "Call",
                       START + timedelta(hours=1), "high", due_tz="America/New_York")


# --- Salesforce --------------------------------------------------------------------------------------------


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    add_standard_task_fields(emulator)
    return serve(emulator, tls.server_context)


def test_salesforce_task_is_re_owned_then_closed_and_a_completed_one_is_left_alone(
        emu: SalesforceEmulator, client: SalesforceClient) -> None:
    writer = SalesforceWriter(client)
    first, second = emu.add_user("Grace", "Hopper"), emu.add_user("Alan", "Turing")
    lead_id = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "OwnerId": first})
    with pytest.raises(TransientError, match="no Salesforce Task carries key"):  # not created yet: retry later
        writer.update_task(TaskUpdate(lead_context(Crm.SALESFORCE, lead_id, second), KEY, second), "u0")
    task_id = writer.create_task(request(Crm.SALESFORCE, lead_id, first), KEY)
    assert emu.get("Task", task_id)["ActivityDate"] == "2026-11-25"  # type: ignore[index]
    moved = writer.update_task(TaskUpdate(lead_context(Crm.SALESFORCE, lead_id, second), KEY, second), "u1")
    assert moved == f"owner:{second}:{task_id}" and emu.get("Task", task_id)["OwnerId"] == second  # type: ignore[index]
    patches = sum(1 for e in emu.log.entries if e["method"] == "PATCH")
    writer.update_task(TaskUpdate(lead_context(Crm.SALESFORCE, lead_id, second), KEY, second), "u1")  # replay
    assert sum(1 for e in emu.log.entries if e["method"] == "PATCH") == patches  # nothing written again
    writer.update_task(TaskUpdate(lead_context(Crm.SALESFORCE, lead_id, second), KEY, close=True), "u2")
    task = emu.get("Task", task_id)
    assert task is not None and (task["Status"], task["IsClosed"], task["OwnerId"]) == ("Completed", True, second)
    assert task["CompletedDateTime"] == "2026-11-25T14:00:00.000+0000"  # stamped by Salesforce on closing
    answer = writer.update_task(TaskUpdate(lead_context(Crm.SALESFORCE, lead_id, first), KEY, first), "u3")
    assert answer == f"already closed:{task_id}" and emu.get("Task", task_id)["OwnerId"] == second  # type: ignore[index]


# The new owner's deadline: 22:00 in New York on the 26th, already the 27th in UTC.
NEW_DUE = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def test_salesforce_re_owned_task_is_due_at_the_new_owners_deadline_as_creation_writes_it(
        emu: SalesforceEmulator, client: SalesforceClient) -> None:
    writer = SalesforceWriter(client)
    first, second = emu.add_user("Grace", "Hopper"), emu.add_user("Alan", "Turing")
    lead_id = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "OwnerId": first})
    task_id = writer.create_task(request(Crm.SALESFORCE, lead_id, first), KEY)
    patches = sum(1 for e in emu.log.entries if e["method"] == "PATCH")
    move = TaskUpdate(lead_context(Crm.SALESFORCE, lead_id, second), KEY, second, due_at=NEW_DUE,
                      due_tz="America/New_York")
    writer.update_task(move, "u1")
    task = emu.get("Task", task_id)
    assert task is not None and task["OwnerId"] == second
    # ActivityDate is the date in the lead's market, as at creation; the reminder is the instant.
    assert (task["ActivityDate"], task["ReminderDateTime"], task["IsReminderSet"]) == (
        "2026-11-26", "2026-11-27T03:00:00.000+0000", True)
    assert sum(1 for e in emu.log.entries if e["method"] == "PATCH") == patches + 1  # still one write
    without = SalesforceWriter(client, FieldMap(reminders=False))  # an org without reminders: date only
    assert "ReminderDateTime" not in without._due_fields(NEW_DUE, None)
    assert without._due_fields(NEW_DUE, None)["ActivityDate"] == "2026-11-27"  # no market zone: UTC's date


@pytest.mark.parametrize("value", ["20261126", "2026-W48-4", "2026-11-26T22:00:00Z", "2026-11-26+01:00"])
def test_salesforce_emulator_takes_a_date_field_only_as_yyyy_mm_dd(
        emu: SalesforceEmulator, client: SalesforceClient, value: str) -> None:
    lead_id = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines"})
    task_id = client.rest("POST", "sobjects/Task", json={"WhoId": lead_id, "Subject": "Call",
                                                         "ActivityDate": "2026-11-26"})["id"]
    with pytest.raises(PermanentError, match=r"JSON_PARSER_ERROR.*ActivityDate"):
        client.rest("PATCH", f"sobjects/Task/{task_id}", json={"ActivityDate": value})
    assert emu.get("Task", task_id)["ActivityDate"] == "2026-11-26"  # type: ignore[index]


def test_salesforce_reader_reports_a_completed_first_response_task_as_its_progress_kind(
        emu: SalesforceEmulator, client: SalesforceClient, clock: Clock) -> None:
    reader = SalesforceReader(client, FieldMap(), clock=clock)
    rep = emu.add_user("Grace", "Hopper")
    lead_id = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "OwnerId": rep})
    cursor = Cursor()
    for page in reader.read_changes(cursor):
        cursor = page.cursor
    clock.advance(minutes=10)
    ours = emu.insert("Task", {"WhoId": lead_id, "Subject": "First response", "Status": "Completed",
                               "TaskSubtype": "Task", "Sidecar_Key__c": KEY,
                               "CompletedDateTime": (clock.now - timedelta(minutes=1)).isoformat()})
    emu.insert("Task", {"WhoId": lead_id, "Subject": "A rep's own to-do", "Status": "Completed",
                        "TaskSubtype": "Task"})  # not ours, not a call: no progress
    emu.insert("Task", {"WhoId": lead_id, "Subject": "Breach note", "Status": "Completed", "TaskSubtype": "Task",
                        "Sidecar_Key__c": "clock:1:step:1:note"})  # ours, but not a first-response task
    activities = [a for p in reader.read_changes(cursor) for s in p.snapshots for a in s.activities]
    assert [(a.crm_id, a.kind, a.at) for a in activities] == [
        (ours, ProgressKind.FIRST_RESPONSE_TASK_COMPLETED, clock.now - timedelta(minutes=1))]


def test_a_missing_task_key_field_costs_one_refused_query_then_polls_without_it(
        tls: LoopbackTLS, clock: Clock, http: requests.Session, serve: Serve) -> None:
    bare = SalesforceEmulator(clock=clock)
    add_standard_task_fields(bare, key_field=False)
    serve(bare, tls.server_context)
    client = connect(SalesforceCredentials(session_id=bare.access_token, instance_url=bare.url), http)
    reader = SalesforceReader(client, FieldMap(), clock=clock)
    lead_id = bare.insert("Lead", {"LastName": "Lovelace", "Company": "Engines"})
    pages = list(reader.read_changes(Cursor()))
    assert [s.crm_id for p in pages for s in p.snapshots] == [lead_id]
    assert reader.fields.key_field is None
    assert bare.api_usage[0] == 2  # the refused composite call, then the same read without the key
    before = bare.api_usage[0]
    assert [s for p in reader.read_changes(pages[-1].cursor) for s in p.snapshots] == []
    assert bare.api_usage[0] - before == 1  # from then on a quiet poll costs one call, as before


# --- HubSpot -----------------------------------------------------------------------------------------------


def hubspot_task(emulator: HubSpotEmulator, api: HubSpotApi) -> tuple[HubSpotWriter, str, str, tuple[str, str]]:
    """A contact owned by the first of two owners, with our task for them: (writer, contact, task, owners)."""
    writer = HubSpotWriter(api, HubSpotFields())
    writer.ensure_properties()
    first, second = (emulator.add_owner(f"{n}@example.com", n, "Rep") for n in ("grace", "alan"))
    contact = emulator.insert("contacts", {"email": "ada@example.com", "hubspot_owner_id": first})
    return writer, contact, writer.create_task(request(Crm.HUBSPOT, contact, first), KEY), (first, second)


def test_hubspot_task_is_re_owned_then_closed_and_a_completed_one_is_left_alone(
        emulator: HubSpotEmulator, api: HubSpotApi) -> None:
    writer, contact, task_id, (first, second) = hubspot_task(emulator, api)
    writer.update_task(TaskUpdate(lead_context(Crm.HUBSPOT, contact, second), KEY, second), "u1")
    [task] = emulator.records("tasks")
    assert (task["id"], task["properties"]["hubspot_owner_id"]) == (task_id, second)
    writer.update_task(TaskUpdate(lead_context(Crm.HUBSPOT, contact, second), KEY, close=True), "u2")
    [task] = emulator.records("tasks")
    assert task["properties"]["hs_task_status"] == "COMPLETED"
    assert task["properties"]["hs_task_completion_date"] == "2026-11-25T14:00:00.000Z"  # stamped by HubSpot
    assert writer.update_task(TaskUpdate(lead_context(Crm.HUBSPOT, contact, first), KEY, first), "u3") == \
        f"already closed:{task_id}"
    assert emulator.records("tasks")[0]["properties"]["hubspot_owner_id"] == second


def test_hubspot_re_owned_task_is_due_at_the_new_owners_deadline(
        emulator: HubSpotEmulator, api: HubSpotApi) -> None:
    writer, contact, task_id, (_first, second) = hubspot_task(emulator, api)
    assert emulator.records("tasks")[0]["properties"]["hs_timestamp"] == "2026-11-25T15:00:00.000Z"
    writer.update_task(TaskUpdate(lead_context(Crm.HUBSPOT, contact, second), KEY, second, due_at=NEW_DUE,
                                  due_tz="America/New_York"), "u1")
    [task] = emulator.records("tasks")
    assert (task["id"], task["properties"]["hubspot_owner_id"], task["properties"]["hs_timestamp"]) == (
        task_id, second, "2026-11-27T03:00:00.000Z")  # the due instant (HubSpot shows it in the user's zone)


@pytest.mark.parametrize(("value", "stored"), [("1795748400000", "2026-11-27T03:00:00.000Z"),
                                               ("2026-11-27T03:00:00Z", "2026-11-27T03:00:00.000Z"),
                                               ("2026-11-27T03:00:00.000Z", "2026-11-27T03:00:00.000Z")])
def test_hubspot_emulator_takes_a_task_due_date_as_epoch_millis_or_iso(
        emulator: HubSpotEmulator, api: HubSpotApi, value: str, stored: str) -> None:
    writer = HubSpotWriter(api, HubSpotFields())
    writer.ensure_properties()
    owner = emulator.add_owner("grace@example.com", "Grace", "Hopper")
    contact = emulator.insert("contacts", {"email": "ada@example.com"})
    task_id = writer.create_task(request(Crm.HUBSPOT, contact, owner), KEY)
    api.call("general", "crm.objects.basic_api", "update", "tasks", task_id, {"properties": {"hs_timestamp": value}})
    assert emulator.records("tasks")[0]["properties"]["hs_timestamp"] == stored
    with pytest.raises(Rejected, match="not a valid datetime for hs_timestamp"):
        api.call("general", "crm.objects.basic_api", "update", "tasks", task_id,
                 {"properties": {"hs_timestamp": "next Friday"}})


def test_hubspot_emulator_refuses_a_task_for_a_non_owner_or_an_unknown_status(
        emulator: HubSpotEmulator, api: HubSpotApi) -> None:
    writer = HubSpotWriter(api, HubSpotFields())
    writer.ensure_properties()
    owner = emulator.add_owner("grace@example.com", "Grace", "Hopper")
    contact = emulator.insert("contacts", {"email": "ada@example.com"})
    task_id = writer.create_task(request(Crm.HUBSPOT, contact, owner), KEY)
    with pytest.raises(Rejected, match="not a valid owner id"):
        api.call("general", "crm.objects.basic_api", "update", "tasks", task_id,
                 {"properties": {"hubspot_owner_id": "123"}})
    with pytest.raises(Rejected, match="DONE was not one of the allowed options"):
        api.call("general", "crm.objects.basic_api", "update", "tasks", task_id,
                 {"properties": {"hs_task_status": "DONE"}})


def test_hubspot_engagement_sweep_reports_only_our_completed_first_response_tasks(
        emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock) -> None:
    owner = emulator.add_owner("grace@example.com", "Grace", "Hopper")
    HubSpotWriter(api, HubSpotFields()).ensure_properties()
    contact = emulator.insert("contacts", {"email": "ada@example.com"})
    reader = EngagementReader(api, "contacts", clock=clock)
    done = {"hs_task_status": "COMPLETED", "hs_timestamp": "2026-11-26T14:00:00Z", "hubspot_owner_id": owner,
            "hs_task_completion_date": "2026-11-25T13:50:00Z"}
    ours = emulator.insert("tasks", {**done, KEY_PROPERTY: KEY})
    theirs = emulator.insert("tasks", done)
    still_open = emulator.insert("tasks", {**done, "hs_task_status": "NOT_STARTED", KEY_PROPERTY: KEY + "x"})
    for task in (ours, theirs, still_open):
        emulator.associate("tasks", task, "contacts", contact)
    found = reader.changed_since(None)
    assert [(a.crm_id, a.kind, a.at) for a in found[contact]] == [
        (ours, ProgressKind.FIRST_RESPONSE_TASK_COMPLETED, datetime(2026, 11, 25, 13, 50, tzinfo=UTC))]
    assert [(lead, a.crm_id) for lead, a in reader.on_leads([contact])] == [(contact, ours)]
