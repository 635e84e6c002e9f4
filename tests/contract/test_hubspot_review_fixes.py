"""HubSpot connector fixes against the emulator: search lookback, DAILY limit, deleted leads,
meetings as progress, the first poll's engagement sweep, the writer's association check.

Its own fixtures are those of test_hubspot_connector, imported by name (hence F811 below);
the shared ones (emulator, api) come from conftest.py."""
# ruff: noqa: F811

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.reader import HubSpotReader
from connectors.hubspot.writer import HubSpotWriter
from sidecar.domain import ProgressKind
from sidecar.ports import Cursor, TransientError
from tests.contract.harness import Clock, make_api
from tests.contract.test_hubspot_connector import (  # noqa: F401 - fixtures
    FIELDS,
    START,
    clock,
    reader,
)


def drain(reader: HubSpotReader, cursor: Cursor) -> tuple[list[str], Cursor]:
    ids: list[str] = []
    for page in reader.read_changes(cursor):
        ids += [s.crm_id for s in page.snapshots]
        cursor = page.cursor
    return ids, cursor


def test_a_lead_late_in_the_search_index_is_found_by_the_lookback_and_read_once(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    default = HubSpotReader(api, FIELDS, clock=clock, with_engagements=False)
    none = HubSpotReader(api, FIELDS, clock=clock, with_engagements=False, lookback=timedelta(0))
    emulator.insert("contacts", {"email": "a@example.com"})
    _, cursor = drain(default, Cursor())
    none_cursor = cursor
    clock.advance(10)
    late = emulator.insert("contacts", {"email": "late@example.com"})
    emulator.delay_search("contacts", late, 60)  # the index shows it a minute after its stamp
    clock.advance(5)
    other = emulator.insert("contacts", {"email": "b@example.com"})
    ids, cursor = drain(default, cursor)
    assert ids == [other]
    none_ids, none_cursor = drain(none, none_cursor)
    assert none_ids == [other] and cursor.at == none_cursor.at == START + timedelta(seconds=15)
    clock.advance(120)  # now search shows it, 2 minutes behind the cursor
    ids, cursor = drain(default, cursor)
    assert ids == [late] and cursor.at == START + timedelta(seconds=15)  # delivered, cursor kept
    assert default.sweep.late == 1
    assert drain(none, none_cursor)[0] == []  # no lookback: lost for good
    assert drain(default, cursor) == ([], cursor)  # re-read within the lookback, dropped as seen
    # Seen ids cover the whole window (ids at every stamp in it), not only those at the cursor.
    assert {key.partition("@")[0] for key in cursor.seen_ids} >= {late, other}


def test_old_cursors_with_bare_ids_still_resume(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    reader = HubSpotReader(api, FIELDS, clock=clock, with_engagements=False)
    first = emulator.insert("contacts", {"email": "a@example.com"})
    ids, cursor = drain(reader, Cursor())
    assert ids == [first]
    legacy = Cursor(cursor.at, (first,))  # written before keys carried their stamp
    assert drain(reader, legacy)[0] == []


def test_the_daily_limit_raises_at_once_instead_of_sleeping_for_hours(
    emulator: HubSpotEmulator, clock: Clock
) -> None:
    api = make_api(emulator, clock)
    emulator.limits.daily = 0  # today's budget is spent
    before = clock()
    with pytest.raises(TransientError) as limited:
        HubSpotReader(api, FIELDS, clock=clock).read_users()
    assert limited.value.retry_after == 3600.0  # the DAILY policy's first wait
    assert clock() == before  # nothing slept: the dispatcher's scheduled retry takes over
    assert [e["status"] for e in emulator.log.entries] == [429]  # one request, not five retries


def test_a_long_retry_after_is_not_slept_inline(emulator: HubSpotEmulator, clock: Clock) -> None:
    emulator.retry_after_header = True
    emulator.faults.add("rate_limit", next_n=1)  # TEN_SECONDLY_ROLLING, Retry-After: 10
    api = make_api(emulator, clock)
    HubSpotReader(api, FIELDS, clock=clock).read_users()
    assert api.limiter.throttled == 1  # 10 s is within the inline cap: slept and retried


def test_deleted_and_merged_away_contacts_close_with_the_deleted_status(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    kept = emulator.insert("contacts", {"email": "k@example.com", "hs_lead_status": "NEW"})
    gone = emulator.insert("contacts", {"email": "g@example.com", "hs_lead_status": "NEW"})
    clock.advance(30)
    emulator.archive("contacts", gone)
    snapshots = {s.crm_id: s for s in reader.read_leads([kept, gone, "999999"])}
    assert set(snapshots) == {kept, gone}  # an id HubSpot never had is skipped
    assert snapshots[kept].crm_status == "NEW"
    assert snapshots[gone].crm_status == "DELETED" == FIELDS.deleted_status
    assert snapshots[gone].crm_modified_at == START + timedelta(seconds=30)  # newer than what we held
    custom = HubSpotReader(reader.api, dataclasses.replace(FIELDS, deleted_status="Gone"), clock=clock)
    [again] = custom.read_leads([gone])
    assert again.crm_status == "Gone"


def test_booked_meetings_are_not_progress_until_held(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    contact = emulator.insert("contacts", {"email": "m@example.com"})
    clock.advance(60)
    starts, ends = START + timedelta(hours=1), START + timedelta(hours=1, minutes=30)
    booked = emulator.insert("meetings", {"hs_timestamp": starts.isoformat(), "hs_meeting_outcome": "SCHEDULED",
                                          "hs_meeting_end_time": ends.isoformat()})
    pending = emulator.insert("meetings", {"hs_timestamp": starts.isoformat(), "hs_meeting_end_time": ends.isoformat()})
    done = emulator.insert("meetings", {"hs_timestamp": (START - timedelta(hours=2)).isoformat(),
                                        "hs_meeting_end_time": (START - timedelta(hours=1)).isoformat(),
                                        "hs_meeting_outcome": "COMPLETED"})
    for meeting in (booked, pending, done):
        emulator.associate("meetings", meeting, "contacts", contact)
    [snapshot] = reader.read_leads([contact])
    assert [(a.crm_id, a.kind, a.at) for a in snapshot.activities] == [
        (done, ProgressKind.MEETING_HELD, START - timedelta(hours=1))]
    clock.advance(2 * 3600)  # both have ended; only the one without an outcome counts as held
    [snapshot] = reader.read_leads([contact])
    assert [a.crm_id for a in snapshot.activities] == [done, pending]
    assert all(a.at <= clock() for a in snapshot.activities)


def test_the_first_poll_reads_recent_engagements_only_and_page_by_page(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    contacts = emulator.insert_many("contacts", ({"email": f"e{i}@example.com"} for i in range(3)))
    old = emulator.insert("calls", {"hs_timestamp": START.isoformat(), "hs_call_status": "COMPLETED"})
    emulator.associate("calls", old, "contacts", contacts[0])
    clock.advance(40 * 86400)  # 40 days later: the old call is outside the 30-day backfill window
    for i, contact in enumerate(contacts[1:] * 150):  # 300 recent calls = 2 search pages
        call = emulator.insert("calls", {"hs_timestamp": clock().isoformat(), "hs_call_status": "COMPLETED"})
        if i < 2:
            emulator.associate("calls", call, "contacts", contact)
    reader = HubSpotReader(api, FIELDS, clock=clock)
    pages = list(reader.read_changes(Cursor()))
    engagement_pages = [p for p in pages if p.cursor == Cursor()]
    assert len(engagement_pages) == 1  # only the first search page links calls to leads
    assert {s.crm_id for s in engagement_pages[0].snapshots} == set(contacts[1:])
    assert reader.engagements.sweeps["calls"].searches == 2  # two pages, not one giant one
    assert all(old not in {a.crm_id for a in s.activities} for p in pages for s in p.snapshots)


def test_a_writer_for_the_leads_object_without_association_ids_is_refused_up_front(api: HubSpotApi) -> None:
    with pytest.raises(ValueError, match="no association type id for tasks, notes -> leads"):
        HubSpotWriter(api, FieldMap(object="leads"))
    HubSpotWriter(api, FieldMap(object="leads"),
                  association_types={("tasks", "leads"): 1, ("notes", "leads"): 2})  # explicit ids: fine
