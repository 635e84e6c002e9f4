"""Contract tests: exactly-once task and note creation in HubSpot without unique-value properties
(not documented for engagements), under an unknown outcome (the create is applied, its answer lost)
and a search index that lags writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.writer import KEY_PROPERTY, HubSpotWriter
from sidecar import outbox
from sidecar.domain import Crm
from sidecar.outbox import Ports, RetryPolicy, dispatch
from sidecar.ports import LeadContext, NoteRequest, TaskRequest, TransientError
from sidecar.store.db import transaction
from sidecar.store.models import OutboxRow
from tests.contract.harness import Clock

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
TASK_CREATES = "/crm/v3/objects/tasks/batch/create"
LAG_S = 30.0  # the emulated search index shows a new record 30 s after its creation


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def lagging(emulator: HubSpotEmulator) -> HubSpotEmulator:
    emulator.search_lag_s = LAG_S
    return emulator


def new_writer(api: HubSpotApi, clock: Clock) -> HubSpotWriter:
    return HubSpotWriter(api, FieldMap(), clock=clock)


@pytest.fixture
def writer(api: HubSpotApi, clock: Clock) -> HubSpotWriter:
    w = new_writer(api, clock)
    w.ensure_properties()
    return w


def task(contact: str) -> TaskRequest:
    lead = LeadContext(Crm.HUBSPOT, contact, "Ada", "Analytical", None, None, None, "NEW", "70000001", None,
                       f"https://app.hubspot.com/contacts/1/record/0-1/{contact}")
    return TaskRequest(lead, "70000001", "Call now", "SLA", START + timedelta(hours=1))


def items_for(emulator: HubSpotEmulator, count: int) -> list[tuple[TaskRequest, str]]:
    contacts = emulator.insert_many("contacts", ({"email": f"x{i}@example.com"} for i in range(count)))
    return [(task(contact), f"lead:{contact}:sla.Breach:task") for contact in contacts]


def keys_in_crm(emulator: HubSpotEmulator, object_type: str = "tasks") -> list[str]:
    return sorted(r["properties"][KEY_PROPERTY] for r in emulator.records(object_type))


def test_a_create_whose_answer_is_lost_is_found_after_the_index_settles_not_made_twice(
    lagging: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter, clock: Clock
) -> None:
    items = items_for(lagging, 3)
    keys = sorted(key for _t, key in items)
    lagging.lose_answers(TASK_CREATES)
    first = writer.create_tasks(items)
    assert keys_in_crm(lagging) == keys  # HubSpot applied it; the answer was a 504
    assert all(isinstance(r, TransientError) and r.retry_after == 120 for r in first.values())
    # The index does not list them yet: searching now and re-creating would duplicate them.
    assert writer.creates.search("tasks", keys) == {}

    api.calls.clear()
    clock.advance(10)  # a retry before the settle time: answered without a call
    early = writer.create_tasks(items)
    assert all(isinstance(r, TransientError) and r.retry_after == pytest.approx(110) for r in early.values())
    assert dict(api.calls) == {} and keys_in_crm(lagging) == keys

    clock.advance(110)
    settled = writer.create_tasks(items)
    by_key = {r["properties"][KEY_PROPERTY]: r["id"] for r in lagging.records("tasks")}
    assert settled == by_key and keys_in_crm(lagging) == keys  # found by key: no second task
    assert dict(api.calls) == {"search_api.do_search": 1}


def test_after_a_crash_a_new_writer_finds_the_tasks_by_key(
    lagging: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter, clock: Clock
) -> None:
    """The process died with the answer lost: nothing remembered. The outbox lease (5 minutes)
    runs out before another dispatcher retries, and its search-before-create finds them."""
    items = items_for(lagging, 120)
    lagging.lose_answers(TASK_CREATES)
    first = writer.create_tasks(items)
    # The first batch of 100 landed unseen (answer lost), the second was answered.
    assert sorted(type(v).__name__ for v in first.values()) == ["TransientError"] * 100 + ["str"] * 20
    assert len(lagging.records("tasks")) == 120
    clock.advance(300)
    api.calls.clear()
    ids = new_writer(api, clock).create_tasks(items)
    assert all(isinstance(v, str) for v in ids.values()) and len(set(ids.values())) == 120
    assert "batch_api.create" not in api.calls
    assert keys_in_crm(lagging) == sorted(key for _t, key in items)


def test_a_create_that_surely_failed_is_created_on_the_next_attempt(
    lagging: HubSpotEmulator, writer: HubSpotWriter
) -> None:
    """A refusal before anything is written (429 here) is no unknown outcome: no settle wait."""
    items = items_for(lagging, 2)
    lagging.faults.add("rate_limit", next_n=100, path_prefix=TASK_CREATES)
    with pytest.raises(TransientError):
        writer.create_tasks(items)
    assert lagging.records("tasks") == []
    lagging.faults.clear()
    ids = writer.create_tasks(items)
    assert all(isinstance(v, str) for v in ids.values()) and len(lagging.records("tasks")) == 2


def test_a_note_whose_answer_is_lost_is_not_added_twice(
    lagging: HubSpotEmulator, writer: HubSpotWriter, clock: Clock
) -> None:
    (contact,) = lagging.insert_many("contacts", [{"email": "note@example.com"}])
    note = NoteRequest(task(contact).lead, "SLA breached", START)
    lagging.lose_answers("/crm/v3/objects/notes/batch/create")
    with pytest.raises(TransientError) as unknown:
        writer.add_note(note, "n-1")
    assert unknown.value.retry_after == 120
    clock.advance(120)
    (record,) = lagging.records("notes")
    assert writer.add_note(note, "n-1") == record["id"] and len(lagging.records("notes")) == 1


def test_the_dispatcher_waits_out_the_index_lag_and_settles_the_task_once(
    lagging: HubSpotEmulator, writer: HubSpotWriter, clock: Clock, sessions: sessionmaker[Session]
) -> None:
    """End to end through the outbox: the intent is the outbox row; the unknown outcome puts it
    back to pending 120 s later; that attempt finds the task and settles the row with its id."""
    items = items_for(lagging, 2)
    with transaction(sessions) as session:
        for request, key in items:
            outbox.enqueue(session, key=key, request=request, now=clock())
    ports = Ports(None, {"hubspot": writer})
    retry = RetryPolicy()
    lagging.lose_answers(TASK_CREATES)
    assert dispatch(sessions, ports, clock(), retry=retry) == {"retry": 2}
    with transaction(sessions) as session:
        rows = list(session.scalars(select(OutboxRow)))
        assert {r.next_attempt_at.replace(tzinfo=UTC) for r in rows} == {clock() + timedelta(seconds=120)}
    clock.advance(120)
    assert dispatch(sessions, ports, clock(), retry=retry) == {"done": 2}
    by_key = {r["properties"][KEY_PROPERTY]: r["id"] for r in lagging.records("tasks")}
    with transaction(sessions) as session:
        assert {r.idempotency_key: r.result for r in session.scalars(select(OutboxRow))} == by_key
    assert len(by_key) == 2 == len(lagging.records("tasks"))


def test_a_dropped_connection_is_not_resent_blindly(
    lagging: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter, clock: Clock
) -> None:
    """The connection closes after the request went out: HubSpot may have applied it, so the create
    is not sent again at once (as a read would be) but looked up after the settle time."""
    items = items_for(lagging, 2)
    lagging.faults.add("drop", next_n=1, path_prefix=TASK_CREATES)
    results = writer.create_tasks(items)
    assert all(isinstance(r, TransientError) and r.retry_after == 120 for r in results.values())
    assert [e["status"] for e in lagging.log.entries if e["path"] == TASK_CREATES] == [0]  # sent once
    clock.advance(120)
    ids = writer.create_tasks(items)  # the drop happened before HubSpot applied it: created now
    assert all(isinstance(v, str) for v in ids.values()) and len(lagging.records("tasks")) == 2


def test_where_the_portal_accepted_unique_keys_a_lost_answer_is_refused_and_read_back(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    """A portal that accepted `hasUniqueValue` on the key (the emulator, like HubSpot's docs, does
    not: set it directly): HubSpot refuses the duplicate itself, so a retry goes at once (409, then
    a read by key) with no search and no wait."""
    writer = new_writer(api, clock)
    writer.ensure_properties()
    emulator.store.property_defs["tasks"][KEY_PROPERTY].has_unique_value = True
    assert writer.key_checks()[0] == (True, f"tasks.{KEY_PROPERTY}: unique values enforced by HubSpot "
                                            "(a duplicate is refused)")
    items = items_for(emulator, 3)
    emulator.lose_answers(TASK_CREATES)
    with pytest.raises(TransientError):
        writer.create_tasks(items)
    assert len(emulator.records("tasks")) == 3
    api.calls.clear()
    ids = writer.create_tasks(items)
    assert {r["properties"][KEY_PROPERTY]: r["id"] for r in emulator.records("tasks")} == ids
    assert dict(api.calls) == {"batch_api.create": 1, "batch_api.read": 1}
