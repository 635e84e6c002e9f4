"""Batched notes and owner changes on HubSpot, against the emulator: batch creates of 100 with no
search on a first attempt, a resend that finds every note instead of writing it twice, a bad input
failing alone, and owner changes read with their history (50 a call) and written 100 a call, a
person's change in between winning."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.writer import KEY_PROPERTY, HubSpotWriter
from sidecar.domain import Crm
from sidecar.ports import ConflictError, LeadContext, NoteRequest, OwnerChange, PermanentError, TransientError
from tests.contract.harness import Clock

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
UPDATES = "/crm/v3/objects/contacts/batch/update"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def writer(api: HubSpotApi, clock: Clock) -> HubSpotWriter:
    w = HubSpotWriter(api, FieldMap(), clock=clock)
    w.ensure_properties()
    return w


def lead(contact: str, owner: str | None = None) -> LeadContext:
    return LeadContext(Crm.HUBSPOT, contact, "Ada", "Analytical", None, None, None, "NEW", owner, None,
                       f"https://app.hubspot.com/contacts/1/record/0-1/{contact}")


def test_250_new_notes_are_3_creates_and_a_resend_finds_them_all(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter
) -> None:
    contacts = emulator.insert_many("contacts", ({"email": f"n{i}@example.com"} for i in range(250)))
    notes = [(NoteRequest(lead(c), "SLA breached", START), f"note:{c}") for c in contacts]
    writer.creates.unique("notes")  # read once per process: may the key be unique on notes?
    api.calls.clear()
    first = writer.add_notes(notes, unsent={key for _n, key in notes})  # the dispatcher's first attempt
    assert dict(api.calls) == {"batch_api.create": 3}  # nothing to search for: never sent before
    assert len(first) == 250 and all(isinstance(v, str) for v in first.values())
    stored = {r["properties"][KEY_PROPERTY]: r["id"] for r in emulator.records("notes")}
    assert stored == first
    api.calls.clear()
    again = writer.add_notes(notes)  # a resend (the claim was lost): searched, nothing created
    assert again == first and len(emulator.records("notes")) == 250
    assert dict(api.calls) == {"search_api.do_search": 3}


def test_a_note_for_a_deleted_contact_fails_alone(emulator: HubSpotEmulator, writer: HubSpotWriter) -> None:
    contacts = emulator.insert_many("contacts", ({"email": f"d{i}@example.com"} for i in range(6)))
    emulator.archive("contacts", contacts[3])
    notes = [(NoteRequest(lead(c), "SLA breached", START), f"note:{c}") for c in contacts]
    results = writer.add_notes(notes, unsent={key for _n, key in notes})
    # HubSpot refuses the whole batch (400, nothing written); halving isolates the bad input.
    assert isinstance(results[f"note:{contacts[3]}"], PermanentError)
    assert sum(isinstance(v, str) for v in results.values()) == 5 and len(emulator.records("notes")) == 5


def owners_scene(emulator: HubSpotEmulator, clock: Clock, count: int) -> tuple[list[str], str, str, str]:
    ours_before, ours, human = (emulator.add_owner(f"{n}@example.com", n, "Rep") for n in ("a", "c", "h"))
    contacts = emulator.insert_many("contacts", ({"email": f"o{i}@example.com", "hubspot_owner_id": ours_before}
                                                 for i in range(count)))
    return contacts, ours_before, ours, human


def test_owner_changes_read_50_and_write_100_a_call_and_a_persons_change_wins(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter, clock: Clock
) -> None:
    contacts, before, ours, human = owners_scene(emulator, clock, 120)
    seen = clock()
    clock.advance(minutes=2)  # between our decision and the dispatch, people act:
    emulator.update_as_user("contacts", contacts[1], {"hubspot_owner_id": human})  # reassigned
    emulator.update_as_user("contacts", contacts[2], {"hubspot_owner_id": human})  # and back:
    clock.advance(seconds=1)
    emulator.update_as_user("contacts", contacts[2], {"hubspot_owner_id": before})  # only history shows it
    emulator.archive("contacts", contacts[3])  # deleted
    clock.advance(minutes=1)
    batch = [(OwnerChange(lead(c, before), before, ours, seen), f"owner:{c}") for c in contacts]
    api.calls.clear()
    results = writer.change_owners(batch)
    # 3 reads with history (50 + 50 + 20), 2 updates (100 + 16); the deleted one alone, one by one
    assert dict(api.calls) == {"batch_api.read": 3, "batch_api.update": 2, "basic_api.get_by_id": 1}
    assert isinstance(results[f"owner:{contacts[1]}"], ConflictError)
    assert isinstance(results[f"owner:{contacts[2]}"], ConflictError)
    assert isinstance(results[f"owner:{contacts[3]}"], PermanentError)
    written = [c for c in contacts if results[f"owner:{c}"] == f"owner:{ours}"]
    assert written == [c for i, c in enumerate(contacts) if i not in (1, 2, 3)]
    owners = {r["id"]: r["properties"]["hubspot_owner_id"] for r in emulator.records("contacts")}
    assert owners[contacts[1]] == human and owners[contacts[2]] == before
    assert all(owners[c] == ours for c in written)

    api.calls.clear()
    again = writer.change_owners([item for item in batch if item[1] != f"owner:{contacts[3]}"])  # a resend
    assert dict(api.calls) == {"batch_api.read": 3}  # every change found done or refused: nothing written
    assert all(again[f"owner:{c}"] == f"owner:{ours}" for c in written)


def test_a_failed_update_leaves_its_changes_to_retry_and_keeps_the_conflicts(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter, clock: Clock
) -> None:
    contacts, before, ours, human = owners_scene(emulator, clock, 4)
    seen = clock()
    clock.advance(minutes=1)
    emulator.update_as_user("contacts", contacts[0], {"hubspot_owner_id": human})
    batch = [(OwnerChange(lead(c, before), before, ours, seen), f"owner:{c}") for c in contacts]
    emulator.faults.add("server_error", next_n=2, path_prefix=UPDATES)  # the update, and its one resend
    results = writer.change_owners(batch)
    assert isinstance(results[f"owner:{contacts[0]}"], ConflictError)
    assert all(isinstance(results[f"owner:{c}"], TransientError) for c in contacts[1:])
    retried = writer.change_owners(batch[1:])
    assert set(retried.values()) == {f"owner:{ours}"}


def test_the_emulated_batch_update_answers_207_for_missing_ids_and_refuses_duplicates(
    emulator: HubSpotEmulator, api: HubSpotApi, writer: HubSpotWriter, clock: Clock
) -> None:
    contacts, before, ours, _human = owners_scene(emulator, clock, 3)
    emulator.archive("contacts", contacts[1])  # deleted after our read
    changes = {f"owner:{c}": OwnerChange(lead(c, before), before, ours, clock()) for c in contacts}
    results: dict[str, str | Exception] = {}
    writer.owners._write(changes, results)
    assert isinstance(results[f"owner:{contacts[1]}"], PermanentError)
    assert results[f"owner:{contacts[0]}"] == results[f"owner:{contacts[2]}"] == f"owner:{ours}"
    inputs = [{"id": contacts[0], "properties": {"hubspot_owner_id": before}}] * 2
    with pytest.raises(PermanentError, match="Duplicate IDs"):
        api.call("general", "crm.objects.batch_api", "update", "contacts", {"inputs": inputs})
    too_many = [{"id": contacts[0]}] * 51
    with pytest.raises(PermanentError, match="property histories is 50"):
        api.call("general", "crm.objects.batch_api", "read", "contacts",
                  {"inputs": too_many, "properties": [], "propertiesWithHistory": ["hubspot_owner_id"]})
