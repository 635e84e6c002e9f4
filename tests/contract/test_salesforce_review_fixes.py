"""Salesforce connector fixes: late commits behind the cursor, configurable closed statuses, Event
stream, Long Text Area filters, owner pre-read, transport errors. Against the TLS emulator.

Its own fixtures are those of test_salesforce_connector, imported by name (hence F811 below);
the shared ones (tls, http, client) come from conftest.py."""
# ruff: noqa: F811

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.errors import translate
from connectors.salesforce.fields import FieldMap, missing_fields, parse_field_map
from connectors.salesforce.reader import SalesforceReader, SeenWindow
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import ProgressKind
from sidecar.ports import ConflictError, Cursor, OwnerChange, PermanentError, TransientError
from tests.contract.harness import Clock
from tests.contract.test_salesforce_connector import (  # noqa: F401 - fixtures
    EXAMPLE_FIELDS,
    START,
    clock,
    context,
    drain,
    emu,
    new_lead,
    reader,
    writer,
)


def test_the_default_lookback_is_five_minutes_and_configurable() -> None:
    assert FieldMap().lookback == timedelta(minutes=5)
    assert parse_field_map({"polling": {"lookback_seconds": 900}}).lookback == timedelta(minutes=15)
    with pytest.raises(ValueError, match=r"polling\.lookback_seconds"):
        parse_field_map({"polling": {"lookback_seconds": "soon"}})


def test_a_row_committed_late_behind_the_cursor_is_caught_by_the_default_lookback_only(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    default = SalesforceReader(client, EXAMPLE_FIELDS, clock=clock)
    short = SalesforceReader(client, EXAMPLE_FIELDS, clock=clock, lookback=timedelta(seconds=2))
    new_lead(emu, "First")
    _, cursor = drain(default, Cursor())
    short_cursor = cursor
    clock.advance(minutes=1)
    late = emu.insert_uncommitted("Lead", {"LastName": "Late", "Company": "Slow Txn Inc"})
    clock.advance(seconds=30)
    other = new_lead(emu, "Other")
    ids, cursor = drain(default, cursor)
    assert ids == [other]
    assert drain(default, cursor) == ([], cursor)
    short_ids, short_cursor = drain(short, short_cursor)
    assert short_ids == [other]
    assert cursor.at == short_cursor.at == START + timedelta(seconds=90)  # both moved past its stamp
    assert emu.commit_pending() == [late]  # the long transaction commits, stamp 30 s behind the cursor
    clock.advance(seconds=1)
    emu.reset_api_usage()
    ids, cursor = drain(default, cursor)
    assert ids == [late] and default.late_reads == 1
    assert drain(short, short_cursor)[0] == []  # a 2 s lookback loses it for good
    emu.reset_api_usage()
    assert drain(default, cursor) == ([], cursor)  # read once: the next poll is quiet again
    assert emu.api_usage[0] == 1


def test_a_bulk_load_inside_the_lookback_keeps_the_quiet_poll_at_one_call_and_still_finds_late_rows(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    emu.query_batch_size = 2  # 7 leads behind the cursor = 4 pages: the count decides, not a re-read
    for i in range(7):
        clock.advance(seconds=1)
        new_lead(emu, f"Bulk{i}")
    late = emu.insert_uncommitted("Lead", {"LastName": "Late", "Company": "C"})
    clock.advance(seconds=1)
    last = new_lead(emu, "Last")
    ids, cursor = drain(reader, Cursor())
    assert len(ids) == 8 and late not in ids
    emu.reset_api_usage()
    assert drain(reader, cursor) == ([], cursor)
    assert emu.api_usage[0] == 1 and reader.late_reads == 0
    emu.commit_pending()
    emu.reset_api_usage()
    ids, cursor = drain(reader, cursor)
    assert ids == [late] and reader.late_reads == 1 and last not in ids


def test_seen_window_prunes_in_place() -> None:
    window = SeenWindow(["a@2026-11-25T08:00:00+00:00", "b@2026-11-25T08:05:00+00:00"])
    window.add([{"Id": "c", "SystemModstamp": "2026-11-25T08:06:00.000+0000"}])
    window.prune(START + timedelta(minutes=1))
    assert window.keys() == ("b@2026-11-25T08:05:00+00:00", "c@2026-11-25T08:06:00.000+0000")
    assert "a@2026-11-25T08:00:00+00:00" not in window and len(window) == 2


def test_a_task_closed_by_an_org_specific_status_is_progress(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    emu.add_task_status("Done", closed=True)
    lead_id = new_lead(emu)
    _, cursor = drain(reader, Cursor())
    clock.advance(minutes=1)
    emu.insert("Task", {"WhoId": lead_id, "Subject": "Call", "Status": "Done", "TaskSubtype": "Call"})
    emu.insert("Task", {"WhoId": lead_id, "Subject": "Call", "Status": "Not Started", "TaskSubtype": "Call"})
    pages = list(reader.read_changes(cursor))
    [snapshot] = [s for page in pages for s in page.snapshots]
    assert [a.kind for a in snapshot.activities] == [ProgressKind.CALL_LOGGED]


def test_a_meeting_that_ends_between_polls_is_announced_without_a_lead_change(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    lead_id, quiet = new_lead(emu), new_lead(emu, "Quiet")
    _, cursor = drain(reader, Cursor())
    emu.insert("Event", {"WhoId": lead_id, "Subject": "Demo", "StartDateTime": (START + timedelta(minutes=10)),
                         "EndDateTime": START + timedelta(minutes=40)})
    clock.advance(minutes=20)
    assert drain(reader, cursor)[0] == []  # booked, not held yet
    clock.advance(minutes=25)  # ended 5 minutes ago; the Event row itself did not change
    emu.reset_api_usage()
    pages = list(reader.read_changes(cursor))
    [snapshot] = [s for page in pages for s in page.snapshots]
    assert snapshot.crm_id == lead_id and [a.kind for a in snapshot.activities] == [ProgressKind.MEETING_HELD]
    assert all(a.at <= clock() for a in snapshot.activities)
    cursor = pages[-1].cursor
    # A meeting logged after the fact (ended before it was created) is announced too.
    clock.advance(minutes=5)
    emu.insert("Event", {"WhoId": quiet, "Subject": "Met at the booth", "EndDateTime": START})
    assert drain(reader, cursor)[0] == [quiet]


def test_soql_refuses_to_filter_or_sort_a_long_text_area(client: SalesforceClient) -> None:
    with pytest.raises(PermanentError, match="can not be filtered in query call"):
        client.query_all("SELECT Id FROM Task WHERE Description LIKE '%sidecar%'")
    with pytest.raises(PermanentError, match="can not be sorted"):
        client.query_all("SELECT Id FROM Task ORDER BY Description")
    assert client.query_all("SELECT Id, Description FROM Task") == []  # selecting it is fine


def test_a_missing_key_field_says_the_writer_is_slower_and_how_to_create_it(
    client: SalesforceClient,
) -> None:
    [problem] = missing_fields(client, FieldMap(key_field="Other_Key__c"))
    assert problem.startswith("Task.Other_Key__c: without it the writer still works, but slower")
    assert "External ID" in problem and "Unique" in problem


def test_owner_change_in_the_same_second_as_our_read_is_not_overwritten(
    emu: SalesforceEmulator, writer: SalesforceWriter, reader: SalesforceReader, clock: Clock
) -> None:
    ours, human = emu.add_user("Our", "Pick"), emu.add_user("Human", "Choice")
    lead_id = new_lead(emu)
    [seen] = reader.read_leads([lead_id])
    clock.advance(seconds=0.4)  # same second: If-Unmodified-Since alone would let our PATCH through
    emu.update_as_user("Lead", lead_id, {"OwnerId": human})
    change = OwnerChange(lead=context(lead_id), from_owner_id=seen.owner_id, to_owner_id=ours,
                         seen_modified_at=seen.crm_modified_at)
    emu.log.clear()
    with pytest.raises(ConflictError, match=human):
        writer.change_owner(change, "k-owner")
    assert emu.get("Lead", lead_id)["OwnerId"] == human  # type: ignore[index]
    assert [e["method"] for e in emu.log.entries] == ["GET"]  # refused before any PATCH


@pytest.mark.parametrize("exc", [requests.exceptions.ChunkedEncodingError("cut"),
                                 requests.exceptions.ContentDecodingError("bad gzip"),
                                 requests.exceptions.SSLError("handshake"), requests.exceptions.ReadTimeout()])
def test_any_transport_failure_is_transient(exc: requests.RequestException) -> None:
    assert isinstance(translate(exc), TransientError)


def test_a_malformed_instance_url_is_permanent() -> None:
    assert isinstance(translate(requests.exceptions.InvalidURL("no host")), PermanentError)
