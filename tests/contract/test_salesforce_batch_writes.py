"""Batched breach notes and owner changes on Salesforce (sObject Collections), against the emulator:
the call counts, a bad item failing alone, a resend writing nothing twice, and a person's change
made between our decision and the batch winning."""

from __future__ import annotations

from datetime import timedelta

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import NOTE_SUBJECT, SalesforceWriter
from sidecar.ports import ConflictError, NoteRequest, OwnerChange, PermanentError
from tests.contract.harness import Clock
from tests.contract.test_salesforce_connector import (  # noqa: F401 (fixtures)
    START,
    clock,
    context,
    emu,
    new_lead,
    reader,
    writer,
)

NOTES_PATH = "/composite/sobjects/Task/Sidecar_Key__c"


def note(lead_id: str, owner: str, text: str = "Breached at 09:00.") -> NoteRequest:
    return NoteRequest(lead=context(lead_id, owner), body=text, at=START)


def test_450_notes_cost_3_calls_a_bad_one_fails_alone_and_a_resend_writes_none(
    emu: SalesforceEmulator, writer: SalesforceWriter  # noqa: F811
) -> None:
    owner = emu.integration_user_id
    lead_id = new_lead(emu)
    batch = [(note(lead_id, owner, f"N{i}"), f"note:{i:04d}") for i in range(450)]
    batch.insert(100, (note("00QHp0000000zzzMAA", owner), "no-such-lead"))  # a WhoId the org lacks
    emu.log.clear()
    emu.reset_api_usage()
    first = writer.add_notes(batch, unsent={key for _note, key in batch})
    assert emu.api_usage[0] == 3 and all(e["path"].endswith(NOTES_PATH) for e in emu.log.entries)
    assert isinstance(first["no-such-lead"], PermanentError) and "INVALID_CROSS_REFERENCE_KEY" in str(
        first["no-such-lead"])
    written = {key: value for key, value in first.items() if key != "no-such-lead"}
    assert len(written) == 450 and all(isinstance(v, str) for v in written.values())
    notes = emu.records("Task")
    assert len(notes) == 450 and {(t["Subject"], t["Status"]) for t in notes} == {(NOTE_SUBJECT, "Completed")}
    emu.reset_api_usage()
    again = writer.add_notes(batch)  # the dispatcher lost its claim after the batch went out
    assert {k: v for k, v in again.items() if k != "no-such-lead"} == written
    assert len(emu.records("Task")) == 450 and emu.api_usage[0] == 3


def test_notes_without_an_external_id_look_up_only_keys_sent_before(
    emu: SalesforceEmulator, client: object, clock: Clock  # noqa: F811
) -> None:
    """Fallback (the key field is not an External ID): keys never sent are created without a lookup;
    keys sent before are looked up first, so a resend still writes nothing twice."""
    from connectors.salesforce.client import SalesforceClient
    from tests.contract.test_salesforce_connector import EXAMPLE_FIELDS

    assert isinstance(client, SalesforceClient)
    fallback = SalesforceWriter(client, EXAMPLE_FIELDS)
    fallback.upsert = False
    lead_id = new_lead(emu)
    batch = [(note(lead_id, emu.integration_user_id, f"N{i}"), f"n{i}") for i in range(3)]
    emu.log.clear()
    first = fallback.add_notes(batch, unsent={"n0", "n1", "n2"})
    assert [e["method"] for e in emu.log.entries] == ["POST"]  # one create, no lookup
    emu.log.clear()
    assert fallback.add_notes(batch) == first and len(emu.records("Task")) == 3
    assert [e["method"] for e in emu.log.entries] == ["GET"]  # the lookup found all three


def test_owner_changes_are_one_read_and_one_write_and_a_persons_change_wins(
    emu: SalesforceEmulator, writer: SalesforceWriter, reader: SalesforceReader, clock: Clock  # noqa: F811
) -> None:
    ours, human = emu.add_user("Our", "Pick"), emu.add_user("Human", "Choice")
    gone = emu.add_user("Old", "Rep", is_active=False)
    leads = [new_lead(emu, f"L{i}") for i in range(6)]
    seen = {s.crm_id: s for s in reader.read_leads(leads)}

    def change(lead_id: str, to: str = ours) -> OwnerChange:
        return OwnerChange(lead=context(lead_id), from_owner_id=seen[lead_id].owner_id, to_owner_id=to,
                           seen_modified_at=seen[lead_id].crm_modified_at)

    clock.advance(minutes=2)  # between our decision and the dispatch, people act:
    emu.update_as_user("Lead", leads[1], {"OwnerId": human}, human)  # reassigned by hand
    emu.update_as_user("Lead", leads[2], {"Company": "Renamed"}, human)  # edited: owner unchanged
    with emu.lock:
        emu.store.apply_delete("Lead", leads[3], human)  # deleted
    clock.advance(minutes=1)
    batch = [(change(lead_id, gone if i == 5 else ours), f"owner:{i}") for i, lead_id in enumerate(leads)]
    emu.reset_api_usage()
    results = writer.change_owners(batch)
    assert emu.api_usage[0] == 2  # one retrieve, one update
    assert results["owner:0"] == results["owner:4"] == f"owner:{ours}"
    assert isinstance(results["owner:1"], ConflictError) and human in str(results["owner:1"])
    assert isinstance(results["owner:2"], ConflictError)  # modified after the decision, as 412 would say
    assert isinstance(results["owner:3"], PermanentError) and "deleted" in str(results["owner:3"])
    assert isinstance(results["owner:5"], PermanentError) and "INACTIVE_OWNER_OR_USER" in str(results["owner:5"])
    owners = {lead_id: (emu.get("Lead", lead_id) or {}).get("OwnerId") for lead_id in leads}
    assert owners[leads[0]] == owners[leads[4]] == ours and owners[leads[1]] == human
    assert owners[leads[2]] == owners[leads[5]] == seen[leads[2]].owner_id
    modified = (emu.get("Lead", leads[0]) or {})["LastModifiedDate"]

    clock.advance(minutes=1)
    emu.reset_api_usage()
    again = writer.change_owners(batch[:2] + batch[4:5])  # a resend: found done, nothing written
    assert emu.api_usage[0] == 1 and again["owner:0"] == again["owner:4"] == f"owner:{ours}"
    assert isinstance(again["owner:1"], ConflictError)
    assert (emu.get("Lead", leads[0]) or {})["LastModifiedDate"] == modified


def test_2001_owner_changes_read_in_two_retrieves_and_write_in_11_updates(
    emu: SalesforceEmulator, writer: SalesforceWriter  # noqa: F811
) -> None:
    ours = emu.add_user("Our", "Pick")
    leads = [new_lead(emu, f"L{i}") for i in range(2001)]
    batch = [(OwnerChange(context(lead_id), emu.integration_user_id, ours, START + timedelta(hours=1)), f"k{i}")
             for i, lead_id in enumerate(leads)]
    emu.log.clear()
    results = writer.change_owners(batch)
    assert set(results.values()) == {f"owner:{ours}"}
    assert [e["method"] for e in emu.log.entries] == ["POST", "POST"] + ["PATCH"] * 11


def test_the_emulated_retrieve_keeps_salesforces_limits_and_shapes(
    emu: SalesforceEmulator, sf: Salesforce  # noqa: F811
) -> None:
    lead_id = new_lead(emu)
    answer = sf.restful("composite/sobjects/Lead", method="POST",
                        json={"ids": [lead_id, "00QHp0000000zzzMAA"], "fields": ["OwnerId"]})
    assert answer[0]["Id"] == lead_id and answer[0]["OwnerId"] == emu.integration_user_id and answer[1] is None
    assert answer[0]["attributes"]["type"] == "Lead"
    with pytest.raises(SalesforceError) as too_many:
        sf.restful("composite/sobjects/Lead", method="POST", json={"ids": [lead_id] * 2001, "fields": ["OwnerId"]})
    assert too_many.value.status == 400
    with pytest.raises(SalesforceError) as bad_field:
        sf.restful("composite/sobjects/Lead", method="POST", json={"ids": [lead_id], "fields": ["Nope__c"]})
    assert bad_field.value.status == 400 and "INVALID_FIELD" in str(bad_field.value.content)
