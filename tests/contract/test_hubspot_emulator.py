"""Contract tests: the real hubspot-api-client against the HubSpot emulator over loopback HTTP.

Time is virtual: the emulator's clock is a harness.Clock the tests advance, so record timestamps,
rate-limit windows and webhook timestamps are exact and no test sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import hubspot
import pytest
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.objects import (
    ApiException,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.tasks import ApiException as TasksApiException
from hubspot.crm.owners import ApiException as OwnersApiException
from hubspot.crm.properties import ApiException as PropertiesApiException
from hubspot.crm.properties import PropertyCreate
from urllib3.util.retry import Retry

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator, sign_v3
from tests.contract.harness import Clock

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
# Every generated sub-package of the client raises its own ApiException class.
API_ERRORS = (ApiException, ContactsApiException, TasksApiException, OwnersApiException,
              PropertiesApiException)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def client(emulator: HubSpotEmulator) -> Any:
    return hubspot.Client.create(access_token=DEFAULT_TOKEN, host=emulator.url)


def _body(exc: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(exc.body)
    return parsed


def _search(client: Any, object_type: str = "contacts", **fields: Any) -> Any:
    return client.crm.objects.search_api.do_search(object_type, PublicObjectSearchRequest(**fields))


def _task_input(subject: str, contact_id: str, type_id: int = 204) -> SimplePublicObjectInputForCreate:
    return SimplePublicObjectInputForCreate(
        properties={"hs_task_subject": subject, "hs_timestamp": "2024-05-06T09:00:00Z"},
        associations=[{"to": {"id": contact_id},
                       "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}],
    )


# -- objects -------------------------------------------------------------------------------------


def test_crud_roundtrip_uses_injected_clock(client: Any, emulator: HubSpotEmulator, clock: Clock) -> None:
    api = client.crm.contacts.basic_api
    props = {"email": "ada@example.com", "firstname": "Ada"}
    created = api.create(SimplePublicObjectInputForCreate(properties=props))
    assert created.id.isdigit()
    assert created.created_at == START
    props = created.properties
    assert props["hs_object_id"] == created.id
    assert props["createdate"] == "2024-05-06T09:00:00.000Z" == props["lastmodifieddate"]
    assert ISO_MS.match(props["createdate"])

    clock.advance(90.5)
    updated = api.update(created.id, SimplePublicObjectInput(properties={"lastname": "Lovelace"}))
    assert updated.properties["lastmodifieddate"] == "2024-05-06T09:01:30.500Z"
    assert updated.updated_at == START + timedelta(seconds=90.5)

    read = api.get_by_id(created.id, properties=["lastname", "phone"])
    assert read.properties["lastname"] == "Lovelace"
    assert read.properties["phone"] is None  # asked for but unset: null, as HubSpot does

    api.archive(created.id)
    with pytest.raises(API_ERRORS) as missing:
        api.get_by_id(created.id)
    assert missing.value.status == 404
    assert _body(missing.value)["category"] == "OBJECT_NOT_FOUND"
    assert emulator.records("contacts") == []


def test_engagements_and_leads_share_the_generic_object_api(client: Any, emulator: HubSpotEmulator) -> None:
    contact = emulator.insert("contacts", {"email": "lead@example.com"})
    objects = client.crm.objects.basic_api
    for object_type, props in [("0-136", {"hs_lead_name": "Lead A"}), ("notes", {"hs_note_body": "hi"}),
                               ("calls", {"hs_call_title": "c"}), ("emails", {"hs_email_subject": "e"}),
                               ("meetings", {"hs_meeting_title": "m"})]:
        created = objects.create(object_type, SimplePublicObjectInputForCreate(properties=props))
        assert set(created.properties) >= {"hs_object_id", "hs_createdate", "hs_lastmodifieddate"}
        fetched = objects.get_by_id(object_type, created.id, properties=list(props))
        assert fetched.properties[next(iter(props))] == next(iter(props.values()))
    lead = objects.create("leads", SimplePublicObjectInputForCreate(
        properties={"hs_lead_name": "Lead B"},
        associations=[{"to": {"id": contact},
                       "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 578}]}]))
    assert emulator.associations_of("contacts", contact, "leads") == [lead.id]
    assert [r["id"] for r in emulator.records("0-136")][-1] == lead.id


def test_unknown_property_is_rejected_until_created(client: Any) -> None:
    tasks = client.crm.objects.tasks.basic_api
    body = SimplePublicObjectInputForCreate(properties={"hs_task_subject": "x", "sidecar_key": "k-1"})
    with pytest.raises(API_ERRORS) as rejected:
        tasks.create(body)
    assert rejected.value.status == 400
    assert _body(rejected.value)["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"

    unique = PropertyCreate(name="sidecar_key", label="Sidecar key", type="string", field_type="text",
                            group_name="taskinformation", has_unique_value=True)
    # Unique values are documented for contacts, companies, deals, tickets and custom objects only.
    with pytest.raises(API_ERRORS) as not_on_tasks:
        client.crm.properties.core_api.create("tasks", unique)
    assert not_on_tasks.value.status == 400 and _body(not_on_tasks.value)["category"] == "VALIDATION_ERROR"
    definition = PropertyCreate(name="sidecar_key", label="Sidecar key", type="string", field_type="text",
                                group_name="taskinformation")
    created = client.crm.properties.core_api.create("tasks", definition)
    assert created.name == "sidecar_key" and not created.has_unique_value
    with pytest.raises(API_ERRORS) as exists:
        client.crm.properties.core_api.create("tasks", definition)
    assert exists.value.status == 409

    first = tasks.create(body)
    # Not unique: HubSpot stores a second task with the same key (why the writer searches first)...
    second = tasks.create(body)
    assert first.id != second.id
    # ...and refuses to read by a non-unique property.
    with pytest.raises(API_ERRORS) as by_key:
        tasks.get_by_id("k-1", id_property="sidecar_key")
    assert by_key.value.status == 400
    assert _body(by_key.value)["message"].startswith("Unable to perform read by non-unique 0-27 property sidecar_key")
    names = [p.name for p in client.crm.properties.core_api.get_all("tasks").results]
    assert "sidecar_key" in names and "hs_task_status" in names


def test_a_unique_contact_property_refuses_a_duplicate_and_reads_by_key(client: Any) -> None:
    contacts = client.crm.contacts.basic_api
    client.crm.properties.core_api.create("contacts", PropertyCreate(
        name="erp_id", label="ERP id", type="string", field_type="text", group_name="contactinformation",
        has_unique_value=True))
    first = contacts.create(SimplePublicObjectInputForCreate(properties={"erp_id": "E-1"}))
    with pytest.raises(API_ERRORS) as duplicate:
        contacts.create(SimplePublicObjectInputForCreate(properties={"erp_id": "E-1"}))
    assert duplicate.value.status == 409 and _body(duplicate.value)["category"] == "CONFLICT"
    assert contacts.get_by_id("E-1", id_property="erp_id").id == first.id


def test_properties_with_history_after_two_status_changes(
    client: Any, emulator: HubSpotEmulator, clock: Clock
) -> None:
    api = client.crm.contacts.basic_api
    contact = api.create(SimplePublicObjectInputForCreate(properties={"hs_lead_status": "NEW"}))
    clock.advance(60)
    api.update(contact.id, SimplePublicObjectInput(properties={"hs_lead_status": "ATTEMPTED_TO_CONTACT"}))
    clock.advance(60)
    emulator.update_as_user("contacts", contact.id, {"hs_lead_status": "CONNECTED"})

    read = api.get_by_id(contact.id, properties_with_history=["hs_lead_status"])
    timeline = read.properties_with_history["hs_lead_status"]
    assert [v.value for v in timeline] == ["CONNECTED", "ATTEMPTED_TO_CONTACT", "NEW"]  # newest first
    assert [v.timestamp for v in timeline] == [START + timedelta(seconds=s) for s in (120, 60, 0)]
    assert [v.source_type for v in timeline] == ["CRM_UI", "INTEGRATION", "INTEGRATION"]


# -- search --------------------------------------------------------------------------------------


@pytest.fixture
def people(emulator: HubSpotEmulator, clock: Clock) -> dict[str, str]:
    rows = [
        ("ann@acme.com", "Ann", "NEW", "3", "2024-05-01T10:00:00Z"),
        ("bob@acme.com", "Bob", "OPEN", "7", "2024-05-02T10:00:00Z"),
        ("cy@globex.io", "Cy", "NEW", "7", "2024-05-03T10:00:00Z"),
        ("dee@globex.io", "Dee Ann", "CONNECTED", "12", None),
    ]
    ids = {}
    for email, first, status, score, assigned in rows:
        props = {"email": email, "firstname": first, "hs_lead_status": status, "num_notes": score}
        if assigned:
            props["hubspot_owner_assigneddate"] = assigned
        ids[first] = emulator.insert("contacts", props)
        clock.advance(1)
    return ids


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"propertyName": "hs_lead_status", "operator": "EQ", "value": "NEW"}], ["Ann", "Cy"]),
        ([{"propertyName": "hs_lead_status", "operator": "NEQ", "value": "NEW"}], ["Bob", "Dee Ann"]),
        ([{"propertyName": "num_notes", "operator": "GT", "value": "3"}], ["Bob", "Cy", "Dee Ann"]),
        ([{"propertyName": "num_notes", "operator": "LTE", "value": "7"}], ["Ann", "Bob", "Cy"]),
        ([{"propertyName": "num_notes", "operator": "LT", "value": "7"}], ["Ann"]),
        ([{"propertyName": "num_notes", "operator": "GTE", "value": "12"}], ["Dee Ann"]),
        ([{"propertyName": "num_notes", "operator": "BETWEEN", "value": "4", "highValue": "12"}],
         ["Bob", "Cy", "Dee Ann"]),
        ([{"propertyName": "hs_lead_status", "operator": "IN", "values": ["OPEN", "CONNECTED"]}],
         ["Bob", "Dee Ann"]),
        ([{"propertyName": "hs_lead_status", "operator": "NOT_IN", "values": ["NEW"]}], ["Bob", "Dee Ann"]),
        ([{"propertyName": "hubspot_owner_assigneddate", "operator": "HAS_PROPERTY"}], ["Ann", "Bob", "Cy"]),
        ([{"propertyName": "hubspot_owner_assigneddate", "operator": "NOT_HAS_PROPERTY"}], ["Dee Ann"]),
        ([{"propertyName": "firstname", "operator": "CONTAINS_TOKEN", "value": "ann"}], ["Ann", "Dee Ann"]),
        ([{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@globex.io"}],
         ["Cy", "Dee Ann"]),
        # datetime values: epoch millis (2024-05-02T00:00Z) and ISO are both accepted
        ([{"propertyName": "hubspot_owner_assigneddate", "operator": "GTE", "value": "1714608000000"}],
         ["Bob", "Cy"]),
        ([{"propertyName": "hubspot_owner_assigneddate", "operator": "LT",
           "value": "2024-05-02T10:00:00.000Z"}],
         ["Ann"]),
        # AND within a group
        ([{"propertyName": "hs_lead_status", "operator": "EQ", "value": "NEW"},
          {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "globex.io"}], ["Cy"]),
    ],
)
def test_search_operators(client: Any, people: dict[str, str], filters: list[dict[str, Any]],
                          expected: list[str]) -> None:
    page = _search(client, filter_groups=[{"filters": filters}], properties=["firstname"], limit=50)
    assert sorted(r.properties["firstname"] for r in page.results) == expected
    assert page.total == len(expected)


def test_search_or_groups_sorts_and_stable_ties(client: Any, people: dict[str, str]) -> None:
    groups = [{"filters": [{"propertyName": "hs_lead_status", "operator": "EQ", "value": "CONNECTED"}]},
              {"filters": [{"propertyName": "num_notes", "operator": "EQ", "value": "7"}]}]
    descending = _search(client, filter_groups=groups, properties=["firstname", "num_notes"],
                         sorts=[{"propertyName": "num_notes", "direction": "DESCENDING"}])
    # Bob and Cy tie on 7: broken by ascending id in both directions.
    assert [r.properties["firstname"] for r in descending.results] == ["Dee Ann", "Bob", "Cy"]
    ascending = _search(client, filter_groups=groups, properties=["firstname"], sorts=["num_notes"])
    assert [r.properties["firstname"] for r in ascending.results] == ["Bob", "Cy", "Dee Ann"]
    by_created = _search(client, properties=["firstname"], sorts=["-createdate"])
    assert [r.properties["firstname"] for r in by_created.results] == ["Dee Ann", "Cy", "Bob", "Ann"]


def test_search_pages_through_200_row_pages(client: Any, emulator: HubSpotEmulator, clock: Clock) -> None:
    ids = emulator.insert_many("contacts", ({"email": f"p{i}@example.com"} for i in range(450)))
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = _search(client, limit=200, after=after)
        pages += 1
        assert page.total == 450
        seen.extend(r.id for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
        clock.advance(0.25)  # stay inside the 5 searches/second limit
    assert pages == 3
    assert seen == ids  # default order is by id: no gaps, no repeats across pages


def test_search_limit_above_200_is_a_validation_error(client: Any) -> None:
    with pytest.raises(API_ERRORS) as exc:
        _search(client, limit=201)
    assert exc.value.status == 400
    assert _body(exc.value)["category"] == "VALIDATION_ERROR"


def test_search_caps_at_10000_and_a_gte_window_restart_gets_the_rest(
    client: Any, emulator: HubSpotEmulator, clock: Clock
) -> None:
    total = 10_500
    for start in range(0, total, 100):  # 100 contacts per virtual second: ties on lastmodifieddate
        emulator.insert_many("contacts", ({"email": f"c{i}@example.com"} for i in range(start, start + 100)))
        clock.advance(1)
    sort = [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]

    search_api = client.crm.objects.search_api

    def sweep(filter_groups: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            clock.advance(0.25)  # 4 searches per virtual second: under the search limit
            # Raw bodies (_preload_content=False): the client's dateutil parsing of 20k timestamps
            # would dominate the test; model deserialisation is covered by the other tests.
            request = PublicObjectSearchRequest(filter_groups=filter_groups, sorts=sort, limit=200,
                                                after=after, properties=["lastmodifieddate"])
            raw = search_api.do_search("contacts", request, _preload_content=False)
            page = json.loads(raw.data)
            rows.extend(page["results"])
            if "paging" not in page:
                return rows, None
            after = page["paging"]["next"]["after"]
            assert after is not None
            if int(after) >= 10_000:
                return rows, after

    first, stuck_at = sweep([])
    assert len(first) == 10_000 and stuck_at == "10000"
    with pytest.raises(API_ERRORS) as capped:
        _search(client, sorts=sort, limit=200, after=stuck_at)
    assert capped.value.status == 400
    assert _body(capped.value)["category"] == "VALIDATION_ERROR"

    last_seen = first[-1]["properties"]["lastmodifieddate"]
    millis = str(int(datetime.fromisoformat(last_seen.replace("Z", "+00:00")).timestamp() * 1000))
    window = {"propertyName": "lastmodifieddate", "operator": "GTE", "value": millis}
    rest, more = sweep([{"filters": [window]}])
    assert more is None
    assert len(rest) < 10_000  # the restarted window fits under the cap
    ids = {r["id"] for r in first} | {r["id"] for r in rest}
    assert len(ids) == total  # GTE re-reads the tie at the boundary; the union has every record


def test_search_secondly_limit(client: Any, clock: Clock) -> None:
    for _ in range(5):
        _search(client)
    with pytest.raises(API_ERRORS) as limited:
        _search(client)
    assert limited.value.status == 429
    body = _body(limited.value)
    assert body["message"] == "You have reached your secondly limit."
    assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "SECONDLY")
    clock.advance(1)
    assert _search(client).total == 0


# -- batch ---------------------------------------------------------------------------------------


def test_batch_create_and_read_100_ok_101_rejected(client: Any, emulator: HubSpotEmulator) -> None:
    batch = client.crm.contacts.batch_api
    inputs = [{"properties": {"email": f"b{i}@example.com"}} for i in range(101)]
    created = batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs[:100]))
    assert created.status == "COMPLETE" and len(created.results) == 100
    with pytest.raises(API_ERRORS) as too_many:
        batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
    assert too_many.value.status == 400
    assert len(emulator.records("contacts")) == 100  # the rejected batch wrote nothing

    ids = [{"id": r.id} for r in created.results]
    read = batch.read(BatchReadInputSimplePublicObjectId(inputs=ids, properties=["email"],
                                                         properties_with_history=[]))
    emails = sorted(r.properties["email"] for r in read.results)
    assert emails == sorted(f"b{i}@example.com" for i in range(100))
    with pytest.raises(API_ERRORS) as too_many_reads:
        batch.read(BatchReadInputSimplePublicObjectId(inputs=[*ids, {"id": "1"}], properties=[],
                                                      properties_with_history=[]))
    assert too_many_reads.value.status == 400

    partial = batch.read(BatchReadInputSimplePublicObjectId(inputs=[ids[0], {"id": "999999"}], properties=[],
                                                            properties_with_history=[]))
    assert len(partial.results) == 1 and partial.num_errors == 1
    assert partial.errors[0].context["ids"] == ["999999"]

    batch.archive(BatchInputSimplePublicObjectId(inputs=ids[:10]))
    assert len(emulator.records("contacts")) == 90
    assert emulator.request_counts["batch"] == 6


def test_batch_update_changes_values(client: Any, emulator: HubSpotEmulator) -> None:
    first = emulator.insert("contacts", {"firstname": "a"})
    second = emulator.insert("contacts", {"firstname": "b"})
    result = client.crm.objects.batch_api.update("contacts", {"inputs": [
        {"id": first, "properties": {"hs_lead_status": "OPEN"}},
        {"id": second, "properties": {"hs_lead_status": "BAD_TIMING"}}]})
    assert result.status == "COMPLETE" and sorted(r.id for r in result.results) == sorted([first, second])
    statuses = {r["id"]: r["properties"].get("hs_lead_status") for r in emulator.records("contacts")}
    assert statuses == {first: "OPEN", second: "BAD_TIMING"}


# -- associations --------------------------------------------------------------------------------


def test_task_and_note_with_associations_land_on_the_contact(client: Any, emulator: HubSpotEmulator) -> None:
    contact = emulator.insert("contacts", {"email": "owner-me@example.com"})
    task = client.crm.objects.tasks.basic_api.create(_task_input("Call back", contact))
    note = client.crm.objects.notes.basic_api.create(SimplePublicObjectInputForCreate(
        properties={"hs_note_body": "SLA warning sent", "hs_timestamp": "1714986000000"},
        associations=[{"to": {"id": contact},
                       "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]))
    assert note.properties["hs_createdate"] == "2024-05-06T09:00:00.000Z"

    assert emulator.associations_of("contacts", contact, "tasks") == [task.id]
    v4 = client.crm.associations.v4.basic_api.get_page("contacts", contact, "tasks")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in v4.results] == [(task.id, 203)]
    back = client.crm.objects.tasks.basic_api.get_by_id(task.id, associations=["contacts"])
    assert [(a.id, a.type) for a in back.associations["contacts"].results] == [(contact, "task_to_contact")]
    exported = emulator.export()
    assert exported["notes"][0]["associations"] == {"contacts": [contact]}
    assert exported["notes"][0]["properties"]["hs_timestamp"] == "2024-05-06T09:00:00.000Z"

    with pytest.raises(API_ERRORS) as wrong_type:
        client.crm.objects.tasks.basic_api.create(_task_input("x", contact, type_id=202))
    assert wrong_type.value.status == 400
    with pytest.raises(API_ERRORS) as no_target:
        client.crm.objects.tasks.basic_api.create(_task_input("x", "424242"))
    assert no_target.value.status == 400
    assert len(emulator.records("tasks")) == 1  # failed creates leave nothing behind


# -- owners --------------------------------------------------------------------------------------


def test_owners_paging_and_lookup(client: Any, emulator: HubSpotEmulator) -> None:
    ids = [emulator.add_owner(f"rep{i}@example.com", f"Rep{i}", "Smith", teams=["Inbound", "EMEA"])
           for i in range(7)]
    owners_api = client.crm.owners.owners_api
    seen: list[str] = []
    after: str | None = None
    while True:
        page = owners_api.get_page(limit=3, after=after)
        seen.extend(o.id for o in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == ids
    owner = owners_api.get_by_id(int(ids[2]))
    assert (owner.email, owner.first_name, owner.type) == ("rep2@example.com", "Rep2", "PERSON")
    assert owner.archived is False
    assert [(t.name, t.primary) for t in owner.teams] == [("Inbound", True), ("EMEA", False)]
    assert owners_api.get_by_id(owner.user_id, id_property="userId").id == owner.id
    assert [o.id for o in owners_api.get_page(email="rep4@example.com").results] == [ids[4]]


# -- rate limits and auth ------------------------------------------------------------------------


def test_ten_second_limit_headers_429_and_recovery(clock: Clock) -> None:
    with HubSpotEmulator(clock=clock, per_ten_seconds=5, daily_limit=1000) as emu:
        api = hubspot.Client.create(access_token=DEFAULT_TOKEN, host=emu.url).crm.owners.owners_api
        remaining = []
        for _ in range(5):
            _, status, headers = api.get_page_with_http_info()
            assert status == 200
            assert headers["X-HubSpot-RateLimit-Max"] == "5"
            assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
            assert headers["X-HubSpot-RateLimit-Daily"] == "1000"
            remaining.append(headers["X-HubSpot-RateLimit-Remaining"])
            clock.advance(1)
        assert remaining == ["4", "3", "2", "1", "0"]
        assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "995"

        with pytest.raises(API_ERRORS) as limited:
            api.get_page()
        assert limited.value.status == 429
        assert limited.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
        body = _body(limited.value)
        assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
        assert body["correlationId"]

        clock.advance(5)  # the first request of the window (t=0) has rolled out at t=10
        _, status, headers = api.get_page_with_http_info()
        assert status == 200 and headers["X-HubSpot-RateLimit-Remaining"] == "0"


def test_client_urllib3_retry_recovers_from_429(clock: Clock) -> None:
    class VirtualSleepRetry(Retry):
        """urllib3 Retry that waits on the emulator's virtual clock instead of time.sleep."""

        waited: list[float] = []  # noqa: RUF012 - shared on purpose: Retry.new() makes copies

        def sleep(self, response: Any = None) -> None:
            seconds = self.get_retry_after(response) if response is not None else None
            self.waited.append(seconds or 0.0)
            clock.advance(seconds or 10)

    retry = VirtualSleepRetry(total=3, status_forcelist=[429], allowed_methods=None,
                              respect_retry_after_header=True)
    with HubSpotEmulator(clock=clock, per_ten_seconds=3, retry_after_header=True) as emu:
        contact = emu.insert("contacts", {"email": "r@example.com"})
        retrying = hubspot.Client.create(access_token=DEFAULT_TOKEN, host=emu.url, retry=retry)
        api = retrying.crm.contacts.basic_api
        for _ in range(4):
            assert api.get_by_id(contact).id == contact
        statuses = [entry["status"] for entry in emu.log.entries]
        assert statuses == [200, 200, 200, 429, 200]
        assert VirtualSleepRetry.waited == [10.0]


def test_rate_limit_fault_has_hubspot_shape(client: Any, emulator: HubSpotEmulator) -> None:
    emulator.faults.add("rate_limit", next_n=1)
    with pytest.raises(API_ERRORS) as limited:
        client.crm.owners.owners_api.get_page()
    assert limited.value.status == 429
    assert _body(limited.value)["policyName"] == "TEN_SECONDLY_ROLLING"
    assert "X-HubSpot-RateLimit-Remaining" in limited.value.headers
    assert client.crm.owners.owners_api.get_page().results == []  # next_n=1: only one request


def test_expired_and_bad_tokens_are_401(client: Any, emulator: HubSpotEmulator) -> None:
    bad = hubspot.Client.create(access_token="pat-na1-wrong", host=emulator.url)
    with pytest.raises(API_ERRORS) as invalid:
        bad.crm.owners.owners_api.get_page()
    assert invalid.value.status == 401
    assert _body(invalid.value)["category"] == "INVALID_AUTHENTICATION"

    emulator.faults.add("expired_session", next_n=1)
    with pytest.raises(API_ERRORS) as fault:
        client.crm.owners.owners_api.get_page()
    assert fault.value.status == 401
    assert _body(fault.value)["message"].startswith("Authentication credentials not found")

    emulator.expire_token()
    with pytest.raises(API_ERRORS) as expired:
        client.crm.owners.owners_api.get_page()
    assert expired.value.status == 401
    assert _body(expired.value)["category"] == "EXPIRED_AUTHENTICATION"


def test_request_counters_by_kind(client: Any, emulator: HubSpotEmulator) -> None:
    _search(client)
    client.crm.contacts.batch_api.read(BatchReadInputSimplePublicObjectId(inputs=[], properties=[],
                                                                          properties_with_history=[]))
    client.crm.owners.owners_api.get_page()
    client.crm.owners.owners_api.get_page()
    assert dict(emulator.request_counts) == {"search": 1, "batch": 1, "other": 2}


# -- webhooks ------------------------------------------------------------------------------------


class _Receiver:
    """A webhook endpoint that fails its first delivery with 500, then acknowledges."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # else each reply waits ~40 ms on delayed ACKs
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if len(receiver.calls) == 1 else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hubspot/webhooks?source=emulator"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_are_signed_batched_and_retried(
    client: Any, emulator: HubSpotEmulator, clock: Clock
) -> None:
    receiver = _Receiver()
    secret = "shh-client-secret"
    try:
        subscriptions = ["contact.creation", "contact.propertyChange:hs_lead_status"]
        emulator.configure_webhooks(receiver.url, secret, subscriptions=subscriptions)
        api = client.crm.contacts.basic_api
        contact = api.create(SimplePublicObjectInputForCreate(properties={"email": "w@example.com"}))
        clock.advance(2)
        # Only hs_lead_status is subscribed: the firstname change must not produce an event.
        changes = {"hs_lead_status": "OPEN", "firstname": "W"}
        api.update(contact.id, SimplePublicObjectInput(properties=changes))
        clock.advance(3)

        assert emulator.deliver_webhooks() == 0  # receiver answers 500: kept for retry
        assert [e["attemptNumber"] for e in emulator.pending_webhooks] == [1, 1]
        clock.advance(60)
        assert emulator.deliver_webhooks() == 2
        assert emulator.pending_webhooks == []
        assert emulator.deliver_webhooks() == 0  # nothing left, nothing re-sent
    finally:
        receiver.close()

    assert len(receiver.calls) == 2
    for (path, headers, body), sent_at in zip(receiver.calls, [START + timedelta(seconds=5),
                                                                START + timedelta(seconds=65)], strict=True):
        assert path == "/hubspot/webhooks?source=emulator"
        timestamp = headers["x-hubspot-request-timestamp"]
        assert timestamp == str(int(sent_at.timestamp() * 1000))
        # Recompute HubSpot's v3 signature independently of the emulator's helper.
        message = b"POST" + receiver.url.encode() + body + timestamp.encode()
        expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
        assert headers["x-hubspot-signature-v3"] == expected
        assert sign_v3(secret, "POST", receiver.url, body, int(timestamp)) == expected
        assert sign_v3("other-secret", "POST", receiver.url, body, int(timestamp)) != expected

    events = json.loads(receiver.calls[1][2])
    assert [e["subscriptionType"] for e in events] == ["contact.creation", "contact.propertyChange"]
    assert all(e["attemptNumber"] == 1 and e["portalId"] == emulator.portal_id for e in events)
    assert all(e["objectId"] == int(contact.id) for e in events)
    change = events[1]
    assert (change["propertyName"], change["propertyValue"], change["changeSource"]) == (
        "hs_lead_status", "OPEN", "INTEGRATION")
    assert events[0]["occurredAt"] == int(START.timestamp() * 1000)
    assert change["occurredAt"] == int((START + timedelta(seconds=2)).timestamp() * 1000)
    assert events[0]["eventId"] != change["eventId"]
