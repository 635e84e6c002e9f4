"""Contract tests: batch task writes in HubSpot — 1,000 tasks in at most 10 batch calls, exactly once
per idempotency key, per-item results.

Batch calls are counted where HubSpot would count them: the emulator's request counters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.writer import KEY_PROPERTY, HubSpotWriter
from sidecar.domain import Crm
from sidecar.ports import LeadContext, PermanentError, TaskRequest, TransientError
from tests.contract.harness import Clock

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def writer(api: HubSpotApi) -> HubSpotWriter:
    w = HubSpotWriter(api, FieldMap())
    w.ensure_properties()
    return w


def task(contact: str, subject: str = "Call now") -> TaskRequest:
    lead = LeadContext(Crm.HUBSPOT, contact, "Ada", "Analytical", None, None, None, "NEW", "70000001", None,
                       f"https://app.hubspot.com/contacts/1/record/0-1/{contact}")
    return TaskRequest(lead, "70000001", subject, "SLA", START + timedelta(hours=1))


def batch_calls(emulator: HubSpotEmulator) -> int:
    return emulator.request_counts["batch"]


def items_for(emulator: HubSpotEmulator, count: int) -> list[tuple[TaskRequest, str]]:
    contacts = emulator.insert_many("contacts", ({"email": f"t{i}@example.com"} for i in range(count)))
    return [(task(contact), f"key-{i}") for i, contact in enumerate(contacts)]


def test_1000_new_tasks_take_10_batch_calls_and_a_replay_creates_nothing(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter
) -> None:
    items = items_for(emulator, 1000)
    before = batch_calls(emulator)
    api.calls.clear()
    ids = writer.create_tasks(items)
    assert batch_calls(emulator) - before <= 10
    # Keys are not unique on tasks: one search per 100 (lower-case) keys first, nothing found, then
    # the creates: 20 calls for 1,000 tasks.
    assert dict(api.calls) == {"core_api.get_by_name": 1, "search_api.do_search": 10, "batch_api.create": 10}
    assert set(ids) == {key for _t, key in items} and all(isinstance(v, str) for v in ids.values())
    tasks = emulator.records("tasks")
    assert len(tasks) == 1000 and {t["id"] for t in tasks} == set(ids.values())
    # Every key is on the record it was reported for, and that record is on its own contact.
    by_id = {t["id"]: t for t in tasks}
    for request, key in items[::97]:
        assert by_id[str(ids[key])]["properties"][KEY_PROPERTY] == key
        assert emulator.associations_of("tasks", str(ids[key]), "contacts") == [request.lead.crm_id]

    before = batch_calls(emulator)
    api.calls.clear()
    again = writer.create_tasks(items)  # a replay of every key (say, the outbox after a crash)
    assert again == ids and len(emulator.records("tasks")) == 1000
    assert batch_calls(emulator) - before == 0 and dict(api.calls) == {"search_api.do_search": 10}


def test_150_tasks_take_2_batch_calls(emulator: HubSpotEmulator, writer: HubSpotWriter) -> None:
    items = items_for(emulator, 150)
    before = batch_calls(emulator)
    ids = writer.create_tasks(items)
    assert batch_calls(emulator) - before == 2
    assert len({v for v in ids.values() if isinstance(v, str)}) == 150 == len(emulator.records("tasks"))


def test_a_lost_response_is_replayed_without_a_second_task(
    emulator: HubSpotEmulator, writer: HubSpotWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HubSpot wrote the first batch but its answer never arrived (the call raised): the replay of
    all 150 keys finds those 100 by key and creates only the other 50."""
    items = items_for(emulator, 150)
    real = writer.api.call
    lost = [True]

    def lose_the_first_create(kind: Any, path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        body = real(kind, path, method, *args, **kwargs)
        if method == "create" and lost[0]:
            lost[0] = False
            raise TransientError("HubSpot crm.objects.batch_api.create: network error: ReadTimeoutError")
        return body

    monkeypatch.setattr(writer.api, "call", lose_the_first_create)
    with pytest.raises(TransientError):
        writer.create_tasks(items)  # nothing reported done: the whole call failed
    assert len(emulator.records("tasks")) == 100
    ids = writer.create_tasks(items)
    tasks = emulator.records("tasks")
    assert len(tasks) == 150 and {t["id"] for t in tasks} == set(ids.values())
    assert sorted(t["properties"][KEY_PROPERTY] for t in tasks) == sorted(key for _t, key in items)


def test_one_invalid_task_fails_alone_among_100(emulator: HubSpotEmulator, writer: HubSpotWriter) -> None:
    items = items_for(emulator, 99)
    items.insert(42, (task("999999"), "ghost"))  # its contact does not exist
    results = writer.create_tasks(items)
    assert isinstance(results["ghost"], PermanentError) and "999999" in str(results["ghost"])
    good = {key: value for key, value in results.items() if key != "ghost"}
    assert len(good) == 99 and all(isinstance(v, str) for v in good.values())
    assert len(emulator.records("tasks")) == 99


def test_a_replay_does_not_reopen_a_task_a_rep_completed(
    emulator: HubSpotEmulator, writer: HubSpotWriter
) -> None:
    items = items_for(emulator, 3)
    ids = writer.create_tasks(items)
    done = str(ids["key-1"])
    emulator.update_as_user("tasks", done, {"hs_task_status": "COMPLETED", "hs_task_subject": "Called"})
    assert writer.create_tasks(items) == ids
    (record,) = [t for t in emulator.records("tasks") if t["id"] == done]
    assert (record["properties"]["hs_task_status"], record["properties"]["hs_task_subject"]) == (
        "COMPLETED", "Called")
    assert len(emulator.records("tasks")) == 3


def test_results_that_do_not_name_the_key_are_read_back(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should HubSpot ever answer a create without the key property, the keys are looked up (one
    search), never guessed from the results' order."""
    monkeypatch.setattr(emulator, "_render_created", lambda record, payload: emulator.store.render(record, None))
    items = items_for(emulator, 20)
    api.calls.clear()
    ids = writer.create_tasks(items)
    assert dict(api.calls) == {"core_api.get_by_name": 1, "search_api.do_search": 2, "batch_api.create": 1}
    by_id = {t["id"]: t["properties"][KEY_PROPERTY] for t in emulator.records("tasks")}
    assert {key: by_id[str(value)] for key, value in ids.items()} == {key: key for _t, key in items}


def test_note_replay_finds_the_first_note(emulator: HubSpotEmulator, writer: HubSpotWriter) -> None:
    from sidecar.ports import NoteRequest

    (contact,) = emulator.insert_many("contacts", [{"email": "n@example.com"}])
    note = NoteRequest(task(contact).lead, "SLA breached", START)
    first = writer.add_note(note, "n-1")
    assert writer.add_note(note, "n-1") == first and len(emulator.records("notes")) == 1


# -- the emulator's batch create, as the writer relies on it ---------------------------------------------


def test_batch_create_echoes_the_sent_properties_in_no_promised_order(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter
) -> None:
    inputs = [{"properties": {"hs_timestamp": "1714986000000", "hs_task_subject": f"s{i}",
                              KEY_PROPERTY: f"echo-{i}"}} for i in range(30)]
    body = api.call("general", "crm.objects.batch_api", "create", "tasks", {"inputs": inputs})
    results = body["results"]
    assert {r["properties"][KEY_PROPERTY] for r in results} == {f"echo-{i}" for i in range(30)}
    assert all(r["properties"]["hs_task_subject"] == "s" + r["properties"][KEY_PROPERTY][5:] for r in results)
    assert {"hs_object_id", "hs_createdate", "hs_lastmodifieddate"} <= set(results[0]["properties"])
    assert [r["properties"][KEY_PROPERTY] for r in results] != [i["properties"][KEY_PROPERTY] for i in inputs]


def test_batch_create_of_an_existing_key_makes_a_second_task(emulator: HubSpotEmulator, api: HubSpotApi,
                                                             writer: HubSpotWriter) -> None:
    """Why the writer looks keys up before creating: the key property on tasks cannot be unique, so
    HubSpot itself does not refuse a second task with the same key."""
    props = {"hs_timestamp": "1714986000000", KEY_PROPERTY: "dup"}
    for _ in range(2):
        api.call("general", "crm.objects.batch_api", "create", "tasks", {"inputs": [{"properties": props}]})
    assert len(emulator.records("tasks")) == 2
