"""The Salesforce connector (reader, writer, auth) against the loopback emulator over TLS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS, route_login_domain
from connectors.salesforce.auth import SalesforceCredentials, check_credentials, connect
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.fields import FieldMap, MappedField, load_field_map, missing_fields
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm, ProgressKind
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.policy import load_policy
from sidecar.policy.version import record_version
from sidecar.ports import (
    ConflictError,
    Cursor,
    LeadContext,
    OwnerChange,
    PermanentError,
    TaskRequest,
    TransientError,
)
from sidecar.store.db import transaction
from sidecar.store.models import Lead, LeadEvent
from sidecar.sync import poll
from tests.conftest import EXAMPLE_POLICY, ROOT
from tests.contract.harness import Clock, Serve

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def add_standard_task_fields(emu: SalesforceEmulator, key_field: bool = True, external_id: bool = True) -> None:
    """Fields a real org's Task has that the emulator's minimal schema leaves out, plus our key
    (set up as the README says: a Unique External ID, unless `external_id` is False)."""
    emu.add_field("Task", "CompletedDateTime", "datetime")
    emu.add_field("Task", "ReminderDateTime", "datetime")
    emu.add_field("Task", "IsReminderSet", "boolean")
    if key_field:
        emu.add_field("Task", "Sidecar_Key__c", "string", external_id=external_id, unique=external_id)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    add_standard_task_fields(emulator)
    return serve(emulator, tls.server_context)


EXAMPLE_FIELDS = load_field_map(ROOT / "config" / "salesforce.fields.example.yaml")


@pytest.fixture
def reader(client: SalesforceClient, clock: Clock) -> SalesforceReader:
    return SalesforceReader(client, EXAMPLE_FIELDS, clock=clock)


@pytest.fixture
def writer(client: SalesforceClient) -> SalesforceWriter:
    return SalesforceWriter(client, EXAMPLE_FIELDS)


def new_lead(emu: SalesforceEmulator, name: str = "Lovelace", **fields: object) -> str:
    return emu.insert("Lead", {"FirstName": "Ada", "LastName": name, "Company": "Engines", **fields})


def drain(reader: SalesforceReader, cursor: Cursor) -> tuple[list[str], Cursor]:
    ids: list[str] = []
    for page in reader.read_changes(cursor):
        ids += [s.crm_id for s in page.snapshots]
        cursor = page.cursor
    return ids, cursor


def context(lead_id: str, owner: str | None = None) -> LeadContext:
    return LeadContext(
        crm=Crm.SALESFORCE,
        crm_id=lead_id,
        name="Ada Lovelace",
        company="Engines",
        market="US-East",
        source="web_form",
        intent="high",
        state="NEW",
        owner_id=owner,
        owner_name=None,
        record_url=f"https://acme.my.salesforce.com/lightning/r/Lead/{lead_id}/view",
    )


# --- reading ------------------------------------------------------------------------------------------


def test_ties_at_one_stamp_across_page_boundaries_lose_nothing(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    new_lead(emu, "Early")
    _, cursor = drain(reader, Cursor())
    emu.query_batch_size = 5
    clock.advance(seconds=30)
    tied = {new_lead(emu, f"Tied{i}") for i in range(12)}  # 12 leads, one SystemModstamp
    pages = list(reader.read_changes(cursor))
    # Server pages of 5: the first also re-reads "Early" (inside the lookback), which is dropped.
    assert [len(p.snapshots) for p in pages] == [4, 5, 3]
    delivered = [s.crm_id for p in pages for s in p.snapshots]
    assert sorted(delivered) == sorted(tied)
    assert all(p.cursor.at == clock.now for p in pages)
    # A crash after the first page: resuming from its cursor delivers exactly the other eight.
    resumed, final = drain(reader, pages[0].cursor)
    assert sorted(resumed) == sorted(tied - {s.crm_id for s in pages[0].snapshots})
    assert final.at == clock.now
    assert drain(reader, final)[0] == []


def test_record_modified_during_a_poll_is_picked_up_next_poll(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    ids = [new_lead(emu, f"L{i}") for i in range(4)]
    _, cursor = drain(reader, Cursor())
    clock.advance(minutes=1)
    for lead_id in ids:
        emu.system_update("Lead", lead_id)
    emu.query_batch_size = 2
    pages = reader.read_changes(cursor)
    first = next(pages)
    clock.advance(minutes=1)
    emu.update_as_user("Lead", first.snapshots[0].crm_id, {"Status": "Working - Contacted"})
    rest = list(pages)
    seen_first_poll = [s.crm_id for p in [first, *rest] for s in p.snapshots]
    assert sorted(seen_first_poll) == sorted(ids)
    again, _ = drain(reader, rest[-1].cursor)
    assert again == [first.snapshots[0].crm_id]
    [snap] = reader.read_leads(again)
    assert snap.crm_status == "Working - Contacted" and snap.status_changed_at == clock.now


def test_lead_history_gives_exact_transition_times(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    rep = emu.add_user("Grace", "Hopper")
    lead_id = new_lead(emu, Country="Germany", LeadSource="Web")
    clock.advance(minutes=7)
    emu.update_as_user("Lead", lead_id, {"Status": "Working - Contacted"})
    clock.advance(minutes=2)
    emu.update_as_user("Lead", lead_id, {"OwnerId": rep})
    clock.advance(minutes=30)
    emu.update_as_user("Lead", lead_id, {"Phone": "555"})  # untracked: moves no transition time
    [snap] = reader.read_leads([lead_id])
    assert snap.status_changed_at == START + timedelta(minutes=7)
    assert snap.owner_changed_at == START + timedelta(minutes=9)
    assert snap.crm_modified_at == START + timedelta(minutes=39)
    assert (snap.owner_id, snap.market, snap.source, snap.name) == (rep, "DACH", "web_form", "Ada Lovelace")


def test_completed_call_task_is_progress_without_any_lead_change(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    lead_id = new_lead(emu)
    _, cursor = drain(reader, Cursor())
    stamp_before = emu.get("Lead", lead_id)["SystemModstamp"]  # type: ignore[index]
    clock.advance(minutes=20)
    done_at = clock.now - timedelta(minutes=3)
    task_id = emu.insert(
        "Task",
        {
            "WhoId": lead_id,
            "Subject": "Call",
            "Status": "Completed",
            "TaskSubtype": "Call",
            "CompletedDateTime": done_at.isoformat(),
        },
    )
    emu.insert("Task", {"WhoId": lead_id, "Subject": "Later", "Status": "Not Started", "TaskSubtype": "Call"})
    assert emu.get("Lead", lead_id)["SystemModstamp"] == stamp_before  # type: ignore[index]
    pages = list(reader.read_changes(cursor))
    [snap] = [s for p in pages for s in p.snapshots]
    assert [(a.crm_id, a.kind, a.at) for a in snap.activities] == [
        (task_id, ProgressKind.CALL_LOGGED, done_at)
    ]
    # The Task is now behind the cursor: the next poll is quiet and costs one (composite) call.
    used = emu.api_usage[0]
    assert drain(reader, pages[-1].cursor)[0] == []
    assert emu.api_usage[0] - used == 1


def test_events_count_as_meetings_once_they_have_ended(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    lead_id = new_lead(emu)
    emu.insert(
        "Event",
        {"WhoId": lead_id, "Subject": "Demo", "EndDateTime": (START - timedelta(hours=1)).isoformat()},
    )
    emu.insert(
        "Event", {"WhoId": lead_id, "Subject": "Next", "EndDateTime": (START + timedelta(days=1)).isoformat()}
    )
    [snap] = reader.read_leads([lead_id])
    assert [(a.kind, a.at) for a in snap.activities] == [
        (ProgressKind.MEETING_HELD, START - timedelta(hours=1))
    ]


def test_converted_and_deleted_leads_close(
    emu: SalesforceEmulator, reader: SalesforceReader, client: SalesforceClient, clock: Clock
) -> None:
    converted = new_lead(emu, "Won")
    deleted = new_lead(emu, "Gone")
    _, cursor = drain(reader, Cursor())
    clock.advance(minutes=5)
    emu.system_update("Lead", converted, {"IsConverted": True, "Status": "Qualified"})
    client.rest("DELETE", f"sobjects/Lead/{deleted}")
    statuses = {s.crm_id: s.crm_status for p in reader.read_changes(cursor) for s in p.snapshots}
    assert statuses == {converted: "Closed - Converted", deleted: "Closed - Not Converted"}


def test_steady_state_poll_costs_one_call_and_backfill_reads_related_once(
    emu: SalesforceEmulator, reader: SalesforceReader
) -> None:
    for i in range(30):
        new_lead(emu, f"L{i}")
    emu.reset_api_usage()
    emu.log.clear()
    ids, cursor = drain(reader, Cursor())
    # Leads + LeadHistory + Tasks + Events as four subrequests of one composite call, Leads first.
    assert len(ids) == 30 and emu.api_usage[0] == 1
    [backfill] = emu.log.entries
    assert [s["url"].split("FROM+")[1].split("+")[0] for s in backfill["body"]["compositeRequest"]] == [
        "Lead", "LeadHistory", "Task", "Event"]
    emu.reset_api_usage()
    emu.log.clear()
    assert drain(reader, cursor) == ([], cursor)
    assert emu.api_usage[0] == 1
    [poll] = emu.log.entries
    assert (poll["method"], poll["path"], poll["status"]) == ("POST", "/services/data/v59.0/composite", 200)
    subrequests = poll["body"]["compositeRequest"]
    assert poll["body"]["collateSubrequests"] is False  # the Task query must run before the Lead query
    # Tasks, Events, the Leads behind the cursor (late commits) and the Leads at or after it.
    assert [s["url"].split("?")[0].rsplit("/", 1)[1] for s in subrequests] == [
        "query", "query", "queryAll", "queryAll"]
    assert [s["url"].split("FROM+")[1].split("+")[0] for s in subrequests] == ["Task", "Event", "Lead", "Lead"]


def test_a_composite_stream_with_more_rows_follows_next_records_url(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    clock.advance(minutes=1)
    ids = {new_lead(emu, f"L{i}") for i in range(5)}
    emu.query_batch_size = 2
    emu.reset_api_usage()
    emu.log.clear()
    delivered, _ = drain(reader, Cursor(START))
    assert set(delivered) == ids
    # One composite call (first page of each stream), then queryMore twice for the Lead stream
    # (3 pages of 2, 2, 1); each page's related rows are the usual IN queries (3 per page).
    paths = [e["path"] for e in emu.log.entries]
    assert paths[0] == "/services/data/v59.0/composite" and paths.count(paths[0]) == 1
    assert sum(p.startswith("/services/data/v59.0/queryAll/01g") for p in paths) == 2
    assert emu.api_usage[0] == len(paths) == 1 + 2 + 3 * 3


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("server_error", TransientError, "SERVER_UNAVAILABLE"),
        ("rate_limit", TransientError, "REQUEST_LIMIT_EXCEEDED"),
    ],
)
def test_a_failed_composite_subrequest_maps_like_a_failed_query(
    emu: SalesforceEmulator, reader: SalesforceReader, fault: str, error: type[Exception], message: str
) -> None:
    # The fault hits only the Lead subrequest (queryAll); the composite call itself answers 200.
    emu.faults.add(fault, next_n=1, path_prefix="/services/data/v59.0/queryAll")
    emu.log.clear()
    with pytest.raises(error, match=message):
        list(reader.read_changes(Cursor(START)))
    [call] = emu.log.entries
    assert call["path"].endswith("/composite") and call["status"] == 200


def test_a_refused_composite_subrequest_is_permanent(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    bogus = SalesforceReader(client, FieldMap(score="Lead_Score__c"), clock=clock)
    with pytest.raises(PermanentError, match="INVALID_FIELD"):
        list(bogus.read_changes(Cursor(START)))
    with pytest.raises(PermanentError, match="INVALID_FIELD"):
        list(bogus.read_changes(Cursor()))


def test_read_users_includes_inactive_with_managers(
    emu: SalesforceEmulator, reader: SalesforceReader
) -> None:
    boss = emu.add_user("Mary", "Boss")
    gone = emu.add_user("Old", "Rep", is_active=False, ManagerId=boss)
    users = {u.id: u for u in reader.read_users()}
    assert users[gone].active is False and users[gone].manager_id == boss
    assert users[boss].name == "Mary Boss" and users[boss].email == "mary.boss@example.com"


# --- writing ------------------------------------------------------------------------------------------


def task_request(lead_id: str, owner: str, subject: str = "Call Ada now") -> TaskRequest:
    return TaskRequest(
        lead=context(lead_id, owner),
        owner_id=owner,
        subject=subject,
        body="SLA breached.",
        due_at=START + timedelta(hours=1),
        priority="high",
    )


def test_create_task_twice_with_one_key_leaves_one_task(
    emu: SalesforceEmulator, writer: SalesforceWriter
) -> None:
    rep = emu.add_user("Grace", "Hopper")
    lead_id = new_lead(emu, OwnerId=rep)
    first = writer.create_task(task_request(lead_id, rep), "lead1:clock1:breach:task")
    # The dispatcher crashed before marking the outbox row done: it calls again with the same key.
    again = writer.create_task(task_request(lead_id, rep), "lead1:clock1:breach:task")
    [task] = emu.records("Task")
    assert first == again == task["Id"]
    assert (task["WhoId"], task["OwnerId"], task["Priority"], task["Status"]) == (
        lead_id,
        rep,
        "High",
        "Not Started",
    )
    assert task["Sidecar_Key__c"] == "lead1:clock1:breach:task" and task["IsReminderSet"] is True
    assert task["ActivityDate"] == "2026-11-25" and task["ReminderDateTime"] == "2026-11-25T09:00:00.000+0000"
    assert f"/lightning/r/Lead/{lead_id}/view" in task["Description"]


def test_without_the_key_field_the_description_marker_keeps_it_exactly_once(
    tls: LoopbackTLS, clock: Clock, http: requests.Session, serve: Serve
) -> None:
    bare = SalesforceEmulator(clock=clock)
    add_standard_task_fields(bare, key_field=False)
    serve(bare, tls.server_context)
    writer = SalesforceWriter(
        connect(SalesforceCredentials(session_id=bare.access_token, instance_url=bare.url), http)
    )
    lead_id = new_lead(bare)
    key = "50%_off:lead"  # LIKE wildcards in a key must not match other tasks
    bare.insert("Task", {"WhoId": lead_id, "Subject": "x", "Description": "[sidecar:50XX_off:lead]"})
    first = writer.create_task(task_request(lead_id, bare.integration_user_id), key)
    assert writer.key_field is None
    assert writer.create_task(task_request(lead_id, bare.integration_user_id), key) == first
    assert len(bare.records("Task")) == 2


def test_add_note_is_a_completed_task_and_idempotent(
    emu: SalesforceEmulator, writer: SalesforceWriter
) -> None:
    from sidecar.ports import NoteRequest

    lead_id = new_lead(emu)
    note = NoteRequest(lead=context(lead_id, emu.integration_user_id), body="Breached at 09:00.", at=START)
    assert writer.add_note(note, "k-note") == writer.add_note(note, "k-note")
    [task] = emu.records("Task")
    assert (task["Subject"], task["Status"], task["TaskSubtype"]) == ("SLA breach note", "Completed", "Task")


def test_owner_change_412_means_the_human_wins(
    emu: SalesforceEmulator, writer: SalesforceWriter, reader: SalesforceReader, clock: Clock
) -> None:
    ours, human = emu.add_user("Our", "Pick"), emu.add_user("Human", "Choice")
    lead_id = new_lead(emu)
    [seen] = reader.read_leads([lead_id])
    clock.advance(minutes=2)
    emu.update_as_user("Lead", lead_id, {"OwnerId": human})
    change = OwnerChange(
        lead=context(lead_id),
        from_owner_id=seen.owner_id,
        to_owner_id=ours,
        seen_modified_at=seen.crm_modified_at,
    )
    with pytest.raises(ConflictError, match=human):
        writer.change_owner(change, "k-owner")
    assert emu.get("Lead", lead_id)["OwnerId"] == human  # type: ignore[index]


def test_owner_change_retried_after_our_own_write_succeeds(
    emu: SalesforceEmulator, writer: SalesforceWriter, reader: SalesforceReader, clock: Clock
) -> None:
    ours = emu.add_user("Our", "Pick")
    lead_id = new_lead(emu)
    [seen] = reader.read_leads([lead_id])
    change = OwnerChange(
        lead=context(lead_id),
        from_owner_id=seen.owner_id,
        to_owner_id=ours,
        seen_modified_at=seen.crm_modified_at,
    )
    clock.advance(minutes=1)
    writer.change_owner(change, "k")
    clock.advance(minutes=1)
    writer.change_owner(change, "k")  # 412 (we modified it), but the owner is already ours
    assert emu.get("Lead", lead_id)["OwnerId"] == ours  # type: ignore[index]


UPSERT_PATH = "/composite/sobjects/Task/Sidecar_Key__c"


def test_create_task_is_one_upsert_call(emu: SalesforceEmulator, writer: SalesforceWriter) -> None:
    lead_id = new_lead(emu)
    emu.log.clear()
    emu.reset_api_usage()
    task_id = writer.create_task(task_request(lead_id, emu.integration_user_id), "single")
    assert emu.api_usage[0] == 1 and [e["method"] for e in emu.log.entries] == ["PATCH"]
    assert emu.log.entries[0]["path"].endswith(UPSERT_PATH)
    assert emu.get("Task", task_id)["Sidecar_Key__c"] == "single"  # type: ignore[index]


def test_450_tasks_cost_3_calls_and_a_replay_creates_nothing_nor_reopens_a_completed_task(
    emu: SalesforceEmulator, writer: SalesforceWriter, clock: Clock
) -> None:
    rep = emu.add_user("Grace", "Hopper")
    lead_id = new_lead(emu)
    batch = [(task_request(lead_id, rep, f"T{i}"), f"batch:{i:04d}") for i in range(450)]
    emu.log.clear()
    emu.reset_api_usage()
    first = writer.create_tasks(batch)
    assert emu.api_usage[0] == 3  # the emulator's daily-limit counter: 200 + 200 + 50, no lookups
    assert all(e["path"].endswith(UPSERT_PATH) for e in emu.log.entries)
    assert len(first) == 450 and all(isinstance(v, str) for v in first.values())
    assert len(emu.records("Task")) == 450 and {t["Status"] for t in emu.records("Task")} == {"Not Started"}
    # Between the first attempt and the replay, the rep completes one task.
    done_id = str(first["batch:0007"])
    clock.advance(minutes=5)
    emu.update_as_user("Task", done_id, {"Status": "Completed"}, rep)
    emu.reset_api_usage()
    again = writer.create_tasks(batch)  # the dispatcher crashed before marking the rows done
    assert emu.api_usage[0] == 3 and again == first and len(emu.records("Task")) == 450
    done = emu.get("Task", done_id)
    assert done is not None and (done["Status"], done["IsClosed"]) == ("Completed", True)


def test_an_invalid_task_fails_alone_as_a_permanent_error(emu: SalesforceEmulator, writer: SalesforceWriter) -> None:
    lead_id = new_lead(emu)
    owner = emu.integration_user_id
    gone = emu.add_user("Old", "Rep", is_active=False)
    batch = [(task_request(lead_id, owner, f"T{i}"), f"k{i}") for i in range(5)]
    batch.insert(2, (task_request("00QHp0000000zzzMAA", owner), "no-such-lead"))  # a WhoId the org lacks
    batch.append((task_request(lead_id, gone), "inactive-owner"))
    results = writer.create_tasks(batch)
    bad, inactive = results["no-such-lead"], results["inactive-owner"]
    assert isinstance(bad, PermanentError) and "INVALID_CROSS_REFERENCE_KEY" in str(bad)
    assert isinstance(inactive, PermanentError) and "INACTIVE_OWNER_OR_USER" in str(inactive)
    assert all(isinstance(results[f"k{i}"], str) for i in range(5)) and len(emu.records("Task")) == 5


def test_a_batch_naming_one_key_twice_writes_one_task(emu: SalesforceEmulator, writer: SalesforceWriter) -> None:
    lead_id = new_lead(emu)
    request = task_request(lead_id, emu.integration_user_id)
    results = writer.create_tasks([(request, "same"), (request, "same"), (request, "other")])
    assert set(results) == {"same", "other"} and all(isinstance(v, str) for v in results.values())
    assert len(emu.records("Task")) == 2


def test_a_failed_call_raises_for_the_whole_batch(emu: SalesforceEmulator, writer: SalesforceWriter) -> None:
    lead_id = new_lead(emu)
    emu.faults.add("server_error", next_n=1)
    with pytest.raises(TransientError):
        writer.create_tasks([(task_request(lead_id, emu.integration_user_id), "k")])
    assert emu.records("Task") == []


def test_a_key_field_that_is_not_an_external_id_falls_back_to_lookups(
    tls: LoopbackTLS, clock: Clock, http: requests.Session, serve: Serve
) -> None:
    plain = SalesforceEmulator(clock=clock)
    add_standard_task_fields(plain, external_id=False)
    serve(plain, tls.server_context)
    writer = SalesforceWriter(
        connect(SalesforceCredentials(session_id=plain.access_token, instance_url=plain.url), http)
    )
    lead_id = new_lead(plain)
    batch = [(task_request(lead_id, plain.integration_user_id, f"T{i}"), f"p{i}") for i in range(250)]
    first = writer.create_tasks(batch)
    assert writer.upsert is False and writer.key_field == "Sidecar_Key__c"
    plain.log.clear()
    assert writer.create_tasks(batch) == first  # found by key: lookups only, nothing created
    calls = {(e["method"], e["path"].rstrip("/").rsplit("/", 1)[-1]) for e in plain.log.entries}
    assert calls == {("GET", "query")}
    assert len(plain.records("Task")) == 250


# --- sessions, errors, credentials --------------------------------------------------------------------


def test_expired_session_is_renewed_once(
    emu: SalesforceEmulator, http: requests.Session, clock: Clock
) -> None:
    route_login_domain(http, emu.url)
    creds = SalesforceCredentials(
        username="integration@example.com", password="password", security_token="TOKEN"
    )
    reader = SalesforceReader(connect(creds, http), clock=clock)
    new_lead(emu)
    emu.expire_sessions()
    assert len(drain(reader, Cursor())[0]) == 1
    logins = [e for e in emu.log.entries if e["path"].startswith("/services/Soap/u/")]
    assert len(logins) == 2


def test_expired_bare_session_is_permanent_with_a_fix(
    emu: SalesforceEmulator, reader: SalesforceReader
) -> None:
    emu.expire_sessions()
    with pytest.raises(PermanentError, match="SIDECAR_SF_SESSION_ID"):
        reader.read_leads(["00QHp0000000001AAA"])


def test_error_mapping(emu: SalesforceEmulator, client: SalesforceClient, clock: Clock) -> None:
    reader = SalesforceReader(client, clock=clock)
    emu.faults.add("rate_limit", next_n=1)
    with pytest.raises(TransientError) as limited:
        reader.read_users()
    assert limited.value.retry_after == 3600
    emu.faults.add("server_error", next_n=1)
    with pytest.raises(TransientError):
        reader.read_users()
    bogus = SalesforceReader(client, FieldMap(score="Lead_Score__c"), clock=clock)
    with pytest.raises(PermanentError, match="INVALID_FIELD"):
        bogus.read_leads(["00QHp0000000001AAA"])
    assert client.api_usage() is None  # failed responses are raised before the header is parsed
    reader.read_users()
    assert client.api_usage() == (emu.api_usage[0], 100_000)


def test_check_credentials_names_the_wrong_one(emu: SalesforceEmulator, http: requests.Session) -> None:
    route_login_domain(http, emu.url)
    good = SalesforceCredentials(
        username="integration@example.com", password="password", security_token="TOKEN"
    )
    assert check_credentials(good, http).startswith("ok: password login")
    wrong = SalesforceCredentials(
        username="integration@example.com", password="password", security_token="NOPE"
    )
    assert "SIDECAR_SF_SECURITY_TOKEN" in check_credentials(wrong, http)
    emu.add_connected_app("cid", "secret")
    route_login_domain(http, emu.url, domain="acme.my")
    machine = SalesforceCredentials(client_id="cid", client_secret="secret", domain="acme.my")
    assert check_credentials(machine, http).startswith("ok: client_credentials")
    bad_secret = SalesforceCredentials(client_id="cid", client_secret="nope", domain="acme.my")
    assert "SIDECAR_SF_CLIENT_SECRET" in check_credentials(bad_secret, http)
    stale = SalesforceCredentials(session_id="00D!stale", instance_url=emu.url)
    assert "SIDECAR_SF_SESSION_ID" in check_credentials(stale, http)


def test_missing_fields_uses_describe(emu: SalesforceEmulator, client: SalesforceClient) -> None:
    fields = FieldMap(market=MappedField("Market__c"), flags={"Sanctions_Match__c": "sanctions_match"})
    assert missing_fields(client, fields) == ["Lead.Market__c", "Lead.Sanctions_Match__c"]
    emu.add_field("Lead", "Market__c", "picklist")
    emu.add_field("Lead", "Sanctions_Match__c", "boolean")
    assert missing_fields(client, fields) == []


# --- end to end: poll into the store -------------------------------------------------------------------


def test_poll_lands_leads_and_events_in_the_store(
    emu: SalesforceEmulator, reader: SalesforceReader, sessions: sessionmaker[Session], clock: Clock
) -> None:
    with transaction(sessions) as session:
        record_version(session, load_policy(EXAMPLE_POLICY), str(EXAMPLE_POLICY), START)
    ctx = EngineContext(PolicyBook(), RecordLinks())
    lead_id = new_lead(emu, Country="United States", LeadSource="Web")
    stats = poll(sessions, ctx, reader, clock.now)
    assert (stats.pages, stats.snapshots) == (1, 1)
    clock.advance(minutes=10)
    emu.insert(
        "Task",
        {
            "WhoId": lead_id,
            "Subject": "Call",
            "Status": "Completed",
            "TaskSubtype": "Call",
            "CompletedDateTime": clock.now.isoformat(),
        },
    )
    clock.advance(minutes=5)
    emu.update_as_user("Lead", lead_id, {"Status": "Working - Contacted"})
    poll(sessions, ctx, reader, clock.now)
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == lead_id)).one()
        kinds = [
            (e.kind, e.new)
            for e in session.scalars(
                select(LeadEvent).where(LeadEvent.lead_id == lead.id).order_by(LeadEvent.at, LeadEvent.id)
            )
        ]
        assert (lead.state, lead.market, lead.source) == ("CONTACTED", "US-East", "web_form")
        assert lead.crm_modified_at == clock.now
    assert kinds[0] == ("created", "NEW")
    assert ("progress", "call_logged") in kinds and ("state_changed", "CONTACTED") in kinds
    assert poll(sessions, ctx, reader, clock.now).snapshots == 0
