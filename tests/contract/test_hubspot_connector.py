"""Contract tests: the HubSpot connector (reader, writer, limits) against the HubSpot emulator.

Virtual time throughout: the emulator's clock is a harness.Clock, and the connector's rate limiter
sleeps by advancing it, so rate limits are real but nothing waits.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.auth import Credentials, HubSpotAuth, check_access
from connectors.hubspot.fields import FieldMap, load_field_map, missing_properties
from connectors.hubspot.limits import LimitSettings, RateLimiter
from connectors.hubspot.reader import HubSpotReader
from connectors.hubspot.writer import HubSpotWriter
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
from tests.contract.harness import Clock, make_api

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


FIELDS = FieldMap(portal_id=str(24_681_357), flags={"sidecar_vip": "vip"})


@pytest.fixture
def reader(api: HubSpotApi, clock: Clock) -> HubSpotReader:
    return HubSpotReader(api, FIELDS, clock=clock)


@pytest.fixture
def writer(api: HubSpotApi) -> HubSpotWriter:
    w = HubSpotWriter(api, FIELDS)
    w.ensure_properties()
    return w


def lead_context(crm_id: str, owner: str | None = None) -> LeadContext:
    return LeadContext(Crm.HUBSPOT, crm_id, "Ada Lovelace", "Analytical", "US-East", "web_form", None, "NEW",
                       owner, None, f"https://app.hubspot.com/contacts/24681357/record/0-1/{crm_id}")


# -- reader ----------------------------------------------------------------------------------------


def test_window_over_10000_records_is_synced_without_duplicates(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    total = 10_500
    for start in range(0, total, 100):  # 100 contacts per virtual second: many share a stamp
        emulator.insert_many("contacts", ({"email": f"c{i}@example.com", "hs_lead_status": "NEW"}
                                          for i in range(start, start + 100)))
        clock.advance(1)
    began = time.perf_counter()
    pages = list(reader.read_changes(Cursor()))
    seconds = time.perf_counter() - began
    ids = [s.crm_id for page in pages for s in page.snapshots]
    assert len(ids) == total and len(set(ids)) == total
    assert reader.sweep.restarts >= 1  # the 10,000-result cap was met and worked around
    assert reader.sweep.searches <= -(-total // 200) + 2
    last = pages[-1].cursor
    assert last.at == START + timedelta(seconds=104)
    # Every lead stamped within the lookback (10 minutes) of the cursor: here all of them.
    assert len(last.seen_ids) == total and f"{ids[-1]}@{int(last.at.timestamp() * 1000)}" in last.seen_ids
    # Resuming from the committed cursor re-reads the lookback window but yields nothing new.
    assert [s for p in reader.read_changes(last) for s in p.snapshots] == []
    assert seconds < 60, f"10,500-row sync took {seconds:.1f}s"


def test_429s_are_absorbed_without_losing_a_page(
    emulator: HubSpotEmulator, api: HubSpotApi, reader: HubSpotReader, clock: Clock
) -> None:
    ids = emulator.insert_many("contacts", ({"email": f"r{i}@example.com"} for i in range(450)))
    emulator.faults.add("rate_limit", next_n=3, path_prefix="/crm/v3/objects/contacts/search")
    before = clock()
    got = [s.crm_id for page in reader.read_changes(Cursor()) for s in page.snapshots]
    assert sorted(got, key=int) == ids
    assert api.limiter.throttled == 3
    assert clock() - before >= timedelta(seconds=30)  # waited the 10 s window each time, virtually


def test_persistent_429_becomes_transient_error_with_retry_after(
    emulator: HubSpotEmulator, clock: Clock
) -> None:
    api = make_api(emulator, clock, max_429_retries=2)
    emulator.faults.add("rate_limit", next_n=5)
    with pytest.raises(TransientError) as limited:
        HubSpotReader(api, FIELDS, clock=clock).read_users()
    assert limited.value.retry_after == 10.0
    assert api.limiter.throttled == 3


def test_default_limits_never_hit_429_on_a_busy_sweep(
    emulator: HubSpotEmulator, api: HubSpotApi, reader: HubSpotReader
) -> None:
    emulator.insert_many("contacts", ({"email": f"b{i}@example.com"} for i in range(2_000)))
    assert sum(len(p.snapshots) for p in reader.read_changes(Cursor())) == 2_000
    assert [e["status"] for e in emulator.log.entries].count(429) == 0
    assert api.limiter.search.waited > 0  # it did have to pace the searches


def test_logged_call_is_call_logged_progress_at_its_timestamp(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    contact = emulator.insert("contacts", {"email": "p@example.com", "hs_lead_status": "NEW"})
    first = list(reader.read_changes(Cursor()))
    cursor = first[-1].cursor
    clock.advance(600)
    call_at = START + timedelta(minutes=7)
    call = emulator.insert("calls", {"hs_timestamp": call_at.isoformat(), "hs_call_status": "COMPLETED",
                                     "hubspot_owner_id": "70000001"})
    emulator.associate("calls", call, "contacts", contact)
    cancelled = emulator.insert("meetings", {"hs_timestamp": call_at.isoformat(),
                                             "hs_meeting_outcome": "CANCELED"})
    emulator.associate("meetings", cancelled, "contacts", contact)

    pages = list(reader.read_changes(cursor))
    snaps = [s for p in pages for s in p.snapshots if s.crm_id == contact]
    activities = [a for s in snaps for a in s.activities]
    assert [(a.crm_id, a.kind, a.at, a.by) for a in activities] == [
        (call, ProgressKind.CALL_LOGGED, call_at, "70000001")]
    assert pages[0].cursor == cursor  # engagement-driven reads never move the lead cursor
    # One v4 batch association read for the call (none for the cancelled meeting, which is not
    # progress), no per-engagement read.
    assert (reader.engagements.batch_association_reads, reader.engagements.association_reads) == (1, 0)
    # The webhook path (read_leads) finds the same progress from the contact side.
    (snap,) = reader.read_leads([contact])
    assert [(a.crm_id, a.kind) for a in snap.activities] == [(call, ProgressKind.CALL_LOGGED)]


def test_property_history_gives_exact_status_and_owner_transition_times(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    contact = emulator.insert("contacts", {"email": "h@example.com", "hs_lead_status": "NEW",
                                           "hubspot_owner_id": "70000001", "sidecar_vip": "true"})
    clock.advance(120)
    emulator.update_as_user("contacts", contact, {"hs_lead_status": "CONNECTED"})
    clock.advance(60)
    emulator.update_as_user("contacts", contact, {"hubspot_owner_id": "70000002"})
    clock.advance(300)
    emulator.update_as_user("contacts", contact, {"firstname": "Hedy"})
    (snap,) = [s for p in reader.read_changes(Cursor()) for s in p.snapshots]
    assert snap.crm_status == "CONNECTED"
    assert snap.status_changed_at == START + timedelta(seconds=120)
    assert snap.owner_id == "70000002" and snap.owner_changed_at == START + timedelta(seconds=180)
    assert snap.crm_modified_at == START + timedelta(seconds=480)
    assert snap.created_at == START and snap.name == "Hedy" and snap.flags == frozenset({"vip"})


def test_read_users_maps_owners_with_primary_team(emulator: HubSpotEmulator, reader: HubSpotReader) -> None:
    ids = [emulator.add_owner(f"rep{i}@example.com", f"Rep{i}", "Smith", teams=["Inbound", "EMEA"])
           for i in range(105)]
    users = reader.read_users()
    assert [u.id for u in users] == ids
    assert (users[3].name, users[3].email, users[3].team, users[3].active) == (
        "Rep3 Smith", "rep3@example.com", "Inbound", True)
    assert reader.record_url("42") == "https://app.hubspot.com/contacts/24681357/record/0-1/42"


# -- writer ----------------------------------------------------------------------------------------


def test_task_lands_on_the_contact_with_owner_and_due_time(
    emulator: HubSpotEmulator, writer: HubSpotWriter
) -> None:
    contact = emulator.insert("contacts", {"email": "t@example.com"})
    other = emulator.insert("contacts", {"email": "other@example.com"})
    due = START + timedelta(hours=2)
    task_id = writer.create_task(TaskRequest(lead_context(contact), "70000001", "Call Ada now",
                                             "SLA breach in 30 min", due, "high"), "lead1:clock1:0.8:task")
    (task,) = emulator.records("tasks")
    props = task["properties"]
    assert task["id"] == task_id
    assert emulator.associations_of("tasks", task_id, "contacts") == [contact]
    assert emulator.associations_of("contacts", other, "tasks") == []
    assert (props["hubspot_owner_id"], props["hs_timestamp"]) == ("70000001", "2024-05-06T11:00:00.000Z")
    assert (props["hs_task_status"], props["hs_task_priority"], props["hs_task_type"]) == (
        "NOT_STARTED", "HIGH", "TODO")
    assert f"record/0-1/{contact}" in props["hs_task_body"]


def test_create_task_twice_with_the_same_key_makes_one_task(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter
) -> None:
    contact = emulator.insert("contacts", {"email": "once@example.com"})
    request = TaskRequest(lead_context(contact), "70000001", "Call", "body", START)
    first = writer.create_task(request, "k-1")
    second = writer.create_task(request, "k-1")
    assert first == second and len(emulator.records("tasks")) == 1
    assert writer.ensure_properties() == []  # the key property exists: 409 is fine


def test_batch_of_150_tasks_with_repeats_uses_few_calls(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter
) -> None:
    contact = emulator.insert("contacts", {"email": "many@example.com"})
    already = writer.create_task(TaskRequest(lead_context(contact), "70000001", "s", "b", START), "key-7")
    api.calls.clear()
    items = [(TaskRequest(lead_context(contact), "70000001", f"task {i}", "b", START), f"key-{i}")
             for i in range(150)]
    ids = writer.create_tasks(items)
    assert ids["key-7"] == already and len(set(ids.values())) == 150 and set(ids) == {k for _t, k in items}
    assert len(emulator.records("tasks")) == 150
    # One search per 100 lower-case keys finds key-7 (keys are not unique on tasks: HubSpot would not
    # refuse a second one); the other 99 of the first 100 in one create, the last 50 in another.
    # Created records are matched to keys by the key property echoed in the results: no read-back.
    assert api.calls == {"search_api.do_search": 2, "batch_api.create": 2}


def test_an_invalid_task_fails_alone_and_a_replay_creates_nothing(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter
) -> None:
    contact = emulator.insert("contacts", {"email": "per-item@example.com"})
    items = [(TaskRequest(lead_context(contact), "70000001", f"task {i}", "b", START), f"item-{i}")
             for i in range(10)]
    items.insert(3, (TaskRequest(lead_context("999999"), "70000001", "ghost", "b", START), "ghost"))
    results = writer.create_tasks(items)
    ghost = results["ghost"]
    assert isinstance(ghost, PermanentError) and "999999" in str(ghost)
    good = {k: v for k, v in results.items() if k != "ghost"}
    assert len(good) == 10 and all(isinstance(v, str) for v in good.values())
    assert len(emulator.records("tasks")) == 10
    api.calls.clear()
    again = writer.create_tasks([item for item in items if item[1] != "ghost"])
    assert again == good and len(emulator.records("tasks")) == 10
    assert api.calls == {"search_api.do_search": 1}  # all found by key: nothing created


def test_a_failed_batch_call_raises_for_the_whole_batch(
    emulator: HubSpotEmulator, writer: HubSpotWriter
) -> None:
    contact = emulator.insert("contacts", {"email": "down@example.com"})
    emulator.faults.add("server_error", next_n=5)  # more than the client's own resends
    with pytest.raises(TransientError):
        writer.create_tasks([(TaskRequest(lead_context(contact), "70000001", "s", "b", START), "down")])
    assert emulator.records("tasks") == []


def test_note_is_created_once_with_its_association(emulator: HubSpotEmulator, writer: HubSpotWriter) -> None:
    from sidecar.ports import NoteRequest

    contact = emulator.insert("contacts", {"email": "n@example.com"})
    note = NoteRequest(lead_context(contact), "SLA breached <by 10 min>", START)
    assert writer.add_note(note, "n-1") == writer.add_note(note, "n-1")
    (row,) = emulator.records("notes")
    assert emulator.associations_of("notes", row["id"], "contacts") == [contact]
    assert "&lt;by 10 min&gt;" in row["properties"]["hs_note_body"]


def test_owner_change_after_a_newer_human_change_is_a_conflict(
    emulator: HubSpotEmulator, writer: HubSpotWriter, clock: Clock
) -> None:
    contact = emulator.insert("contacts", {"email": "o@example.com", "hubspot_owner_id": "70000001"})
    seen = clock()
    clock.advance(60)
    emulator.update_as_user("contacts", contact, {"hubspot_owner_id": "70000009"})
    change = OwnerChange(lead_context(contact, "70000001"), "70000001", "70000002", seen)
    with pytest.raises(ConflictError, match="70000009"):
        writer.change_owner(change, "own-1")
    assert emulator.records("contacts")[0]["properties"]["hubspot_owner_id"] == "70000009"

    # A human who moved it away and back still counts as a newer change.
    emulator.update_as_user("contacts", contact, {"hubspot_owner_id": "70000001"})
    with pytest.raises(ConflictError, match="after our decision"):
        writer.change_owner(change, "own-1")


def test_owner_change_applies_and_a_retry_is_a_no_op(
    emulator: HubSpotEmulator, writer: HubSpotWriter, clock: Clock
) -> None:
    contact = emulator.insert("contacts", {"email": "o2@example.com", "hubspot_owner_id": "70000001"})
    clock.advance(60)
    change = OwnerChange(lead_context(contact, "70000001"), "70000001", "70000002", clock())
    writer.change_owner(change, "own-2")
    clock.advance(5)
    writer.change_owner(change, "own-2")  # our own retry: owner already the target
    history = emulator.store.records["contacts"][int(contact)].history["hubspot_owner_id"]
    assert [v.value for v in history] == ["70000002", "70000001"]


def test_expired_token_is_permanent_with_instructions(
    emulator: HubSpotEmulator, writer: HubSpotWriter
) -> None:
    from sidecar.ports import PermanentError

    contact = emulator.insert("contacts", {"email": "x@example.com"})
    emulator.expire_token()
    with pytest.raises(PermanentError, match="private app"):
        writer.create_task(TaskRequest(lead_context(contact), "1", "s", "b", START), "k-x")


def test_oauth_token_is_refreshed_once_on_401(emulator: HubSpotEmulator, clock: Clock) -> None:
    class FakeRefresh(HubSpotAuth):
        def refresh(self) -> None:  # the emulator has no OAuth token endpoint
            emulator.add_token("fresh-token")
            self._token = "fresh-token"
            self.client = self._build()
            self.refreshes += 1

    auth = FakeRefresh(Credentials("old-token", "refresh", "client", "secret", host=emulator.url))
    api = HubSpotApi(auth, RateLimiter(LimitSettings(), clock.seconds, clock.advance))
    assert HubSpotReader(api, FIELDS, clock=clock).read_users() == []
    assert auth.refreshes == 1 and auth.token == "fresh-token"


def test_check_access_and_missing_properties(emulator: HubSpotEmulator, api: HubSpotApi,
                                             clock: Clock) -> None:
    assert check_access(api) == []
    bad = HubSpotApi(HubSpotAuth(Credentials("pat-wrong", host=emulator.url)),
                     RateLimiter(LimitSettings(), clock.seconds, clock.advance))
    problems = check_access(bad)
    # a refused token is one problem naming the token, not one per call that would fail with it
    assert len(problems) == 1 and "SIDECAR_HUBSPOT_ACCESS_TOKEN refused" in problems[0]
    assert "token revoked or expired" in problems[0]
    # every property the example map names is a default property of a portal
    example = load_field_map(ROOT / "config" / "hubspot.fields.example.yaml")
    assert missing_properties(api, example) == []
    missing = missing_properties(api, dataclasses.replace(example, tier="account_tier_typo"))
    assert len(missing) == 1 and "contacts.account_tier_typo: no such property" in missing[0]


# -- end to end: poll into the store ----------------------------------------------------------------


def test_poll_lands_leads_and_events_in_the_store(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock, sessions: sessionmaker[Session]
) -> None:
    reader = HubSpotReader(api, load_field_map(ROOT / "config" / "hubspot.fields.example.yaml"), clock=clock)
    with transaction(sessions) as session:
        record_version(session, load_policy(ROOT / "config" / "policy.example.yaml"), "policy.example.yaml",
                       START)
    ctx = EngineContext(PolicyBook(), RecordLinks())
    rows = ({"email": f"e{i}@example.com", "firstname": f"E{i}", "hs_lead_status": "NEW",
             "country": "Germany"} for i in range(5))
    ids = emulator.insert_many("contacts", rows)
    clock.advance(60)
    stats = poll(sessions, ctx, reader, clock())
    assert stats.snapshots == 5

    clock.advance(120)
    call = emulator.insert("calls", {"hs_timestamp": clock().isoformat()})
    emulator.associate("calls", call, "contacts", ids[0])
    emulator.update_as_user("contacts", ids[1], {"hs_lead_status": "CONNECTED"})
    clock.advance(60)
    poll(sessions, ctx, reader, clock())
    with transaction(sessions) as session:
        leads = {lead.crm_id: lead for lead in session.scalars(select(Lead).where(Lead.crm == "hubspot"))}
        assert set(leads) == set(ids)
        assert leads[ids[2]].market == "DACH" and leads[ids[2]].state == "NEW"
        assert leads[ids[1]].state == "CONTACTED"
        kinds = {(e.lead_id, e.kind, e.new) for e in session.scalars(select(LeadEvent))}
        assert (leads[ids[0]].id, "progress", "call_logged") in kinds
        assert (leads[ids[1]].id, "state_changed", "CONTACTED") in kinds
        assert leads[ids[0]].last_progress_at is not None
    # A third poll with nothing new changes nothing.
    assert poll(sessions, ctx, reader, clock()).events == 0


def test_reading_100_announced_leads_takes_one_batch_association_read_per_engagement_type(
    emulator: HubSpotEmulator, reader: HubSpotReader, api: HubSpotApi, clock: Clock
) -> None:
    """The webhook path's targeted read: 100 contacts cost 2 batch reads (properties, then owner
    history in 50s) and one v4 batch association read per engagement type, not one read per contact
    and type (405 calls before the emulator answered the batch endpoint)."""
    contacts = emulator.insert_many("contacts", ({"email": f"b{i}@example.com"} for i in range(100)))
    call = emulator.insert("calls", {"hs_timestamp": (START - timedelta(minutes=5)).isoformat(),
                                     "hs_call_status": "COMPLETED"})
    emulator.associate("calls", call, "contacts", contacts[42])
    api.calls.clear()
    snaps = reader.read_leads(contacts)
    assert sorted(s.crm_id for s in snaps) == sorted(contacts)
    assert {s.crm_id: [a.crm_id for a in s.activities] for s in snaps if s.activities} == {contacts[42]: [call]}
    assert api.calls["batch_api.get_page"] == 4 and "basic_api.get_page" not in api.calls
    assert reader.engagements.association_reads == 0


def test_the_emulator_batch_association_read_lists_ids_without_links_as_errors(emulator: HubSpotEmulator) -> None:
    contact, lonely = emulator.insert("contacts", {"email": "x@example.com"}), emulator.insert("contacts", {})
    call = emulator.insert("calls", {"hs_call_status": "COMPLETED"})
    emulator.associate("calls", call, "contacts", contact)
    http = requests.Session()
    http.trust_env = False
    url = f"{emulator.url}/crm/v4/associations/contacts/calls/batch/read"
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    answer = http.post(url, json={"inputs": [{"id": contact}, {"id": lonely}]}, headers=headers, timeout=10)
    assert answer.status_code == 207
    body = answer.json()
    assert [(r["from"]["id"], [t["toObjectId"] for t in r["to"]]) for r in body["results"]] == [(contact, [int(call)])]
    assert [e["context"]["fromObjectId"] for e in body["errors"]] == [[lonely]]
    too_many = http.post(url, json={"inputs": [{"id": str(i)} for i in range(1001)]}, headers=headers, timeout=10)
    assert too_many.status_code == 400
