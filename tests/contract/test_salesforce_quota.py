"""The daily API allowance guard (connectors/quota.py) against the loopback emulator."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import pytest

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.salesforce.client import SalesforceClient, build_sf
from connectors.salesforce.fields import FieldMap, load_field_map
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm
from sidecar.ports import Cursor, LeadContext, TaskRequest, TransientError
from tests.conftest import ROOT
from tests.contract.harness import Clock, Serve

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LIMIT = 100_000
FIELDS = load_field_map(ROOT / "config" / "salesforce.fields.example.yaml")
# A poll that finds one changed lead: the composite poll, then that lead's LeadHistory, Tasks and
# Events (reader._snapshots), as without the guard.
CHANGED_POLL_CALLS = 4
WARNING = "Salesforce API usage {used}/100,000 today: polling slowed to every 10 minutes"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock, daily_limit=LIMIT)
    emulator.add_field("Task", "CompletedDateTime", "datetime")
    emulator.add_field("Task", "ReminderDateTime", "datetime")
    emulator.add_field("Task", "IsReminderSet", "boolean")
    emulator.add_field("Task", "Sidecar_Key__c", "string", external_id=True, unique=True)
    return serve(emulator, tls.server_context)


@pytest.fixture
def reader(client: SalesforceClient, clock: Clock) -> SalesforceReader:
    return SalesforceReader(client, FIELDS, clock=clock)


def new_lead(emu: SalesforceEmulator, name: str) -> str:
    return emu.insert("Lead", {"FirstName": "Ada", "LastName": name, "Company": "Engines"})


def poll(emu: SalesforceEmulator, reader: SalesforceReader, cursor: Cursor) -> tuple[list[str], Cursor, int]:
    """Lead ids delivered, the last cursor, and the API calls the poll cost."""
    before = emu.api_usage[0]
    ids: list[str] = []
    for page in reader.read_changes(cursor):
        ids += [s.crm_id for s in page.snapshots]
        cursor = page.cursor
    return ids, cursor, emu.api_usage[0] - before


def first_poll(emu: SalesforceEmulator, reader: SalesforceReader, used: int) -> Cursor:
    """The org at `used` calls today, then the backfill poll (which learns the usage)."""
    new_lead(emu, "Early")
    emu.set_api_usage(used)
    ids, cursor, calls = poll(emu, reader, Cursor())
    assert len(ids) == 1 and calls == 1
    return cursor


def test_at_95_percent_a_poll_right_after_a_poll_costs_nothing_until_the_slow_interval(
    emu: SalesforceEmulator, reader: SalesforceReader, client: SalesforceClient, clock: Clock
) -> None:
    cursor = first_poll(emu, reader, 95_000)
    assert client.api_usage() == (95_001, LIMIT)
    clock.advance(seconds=30)
    lead = new_lead(emu, "Later")
    assert poll(emu, reader, cursor) == ([], cursor, 0)  # skipped: no call, the cursor stays
    clock.advance(seconds=569)
    assert poll(emu, reader, cursor) == ([], cursor, 0)  # 599 s after the last poll: still skipped
    assert reader.quota.skipped == 2
    clock.advance(seconds=1)
    ids, cursor, calls = poll(emu, reader, cursor)  # 600 s: polls again and gets the change
    assert (ids, calls) == ([lead], CHANGED_POLL_CALLS)
    assert poll(emu, reader, cursor) == ([], cursor, 0)


def test_below_the_guard_every_poll_reads(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    cursor = first_poll(emu, reader, 89_000)
    for i in range(3):
        clock.advance(seconds=5)
        lead = new_lead(emu, f"L{i}")
        ids, cursor, calls = poll(emu, reader, cursor)
        assert (ids, calls) == ([lead], CHANGED_POLL_CALLS)
    assert poll(emu, reader, cursor) == ([], cursor, 1)  # the quiet poll: still exactly one call
    assert reader.quota.skipped == 0


def test_usage_crossing_the_guard_slows_the_next_poll(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    cursor = first_poll(emu, reader, 89_998)  # 89,999 after the backfill: just below 90 %
    clock.advance(seconds=10)
    _, cursor, calls = poll(emu, reader, cursor)  # reads, and lands on 90,000: at the guard
    assert calls == 1
    clock.advance(seconds=10)
    assert poll(emu, reader, cursor) == ([], cursor, 0)
    clock.advance(seconds=590)  # 600 s after the last poll that ran
    assert poll(emu, reader, cursor)[2] == 1


def test_once_usage_falls_below_the_guard_polling_speeds_up_again(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock
) -> None:
    cursor = first_poll(emu, reader, 95_000)
    emu.set_api_usage(0)  # the rolling 24 h window moved on (or the org bought more calls)
    clock.advance(seconds=60)
    assert poll(emu, reader, cursor) == ([], cursor, 0)  # the client still sees the old usage
    clock.advance(seconds=540)
    assert poll(emu, reader, cursor)[2] == 1  # the slow poll reads the new usage...
    clock.advance(seconds=5)
    assert poll(emu, reader, cursor)[2] == 1  # ...and polling is back to normal


def test_the_warning_names_the_usage_once_per_slow_interval(
    emu: SalesforceEmulator, reader: SalesforceReader, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connectors.quota")
    cursor = first_poll(emu, reader, 91_199)  # 91,200 after the backfill
    assert caplog.messages == []  # the usage was unknown when that poll started

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "connectors.quota"]

    for _ in range(3):  # +60 s, +120 s, +180 s: skipped, one warning
        clock.advance(seconds=60)
        assert poll(emu, reader, cursor)[2] == 0
    assert warnings() == [WARNING.format(used="91,200")]
    clock.advance(seconds=480)  # +660 s: 600 s after the first warning, and the poll runs
    assert poll(emu, reader, cursor)[2] == 1
    clock.advance(seconds=540)  # +1200 s: skipped, 540 s after the last warning
    assert poll(emu, reader, cursor)[2] == 0
    assert warnings() == [WARNING.format(used="91,200")] * 2
    clock.advance(seconds=60)  # +1260 s: the next interval; the usage now includes that poll
    assert poll(emu, reader, cursor)[2] == 1
    assert warnings() == [WARNING.format(used="91,200")] * 2 + [WARNING.format(used="91,201")]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}


def test_webhook_reads_and_writes_go_on_at_the_guard(
    emu: SalesforceEmulator, reader: SalesforceReader, client: SalesforceClient, clock: Clock
) -> None:
    cursor = first_poll(emu, reader, 95_000)
    rep = emu.add_user("Grace", "Hopper")
    lead = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "OwnerId": rep})
    assert poll(emu, reader, cursor)[2] == 0  # polling waits...
    before = emu.api_usage[0]
    [snapshot] = reader.read_leads([lead])  # ...an outbound message's lead is read at once
    assert snapshot.crm_id == lead
    context = LeadContext(Crm.SALESFORCE, lead, "Ada Lovelace", "Engines", "US-East", "web_form", "high",
                          "NEW", rep, None, f"https://acme.my.salesforce.com/lightning/r/Lead/{lead}/view")
    request = TaskRequest(context, rep, "Call Ada", "First touch overdue", START + timedelta(hours=1), "high")
    task = SalesforceWriter(client, FIELDS).create_task(request, "lead1:clock1:breach:task")
    assert [t["Id"] for t in emu.records("Task")] == [task]
    assert emu.api_usage[0] > before
    assert client.api_usage() == emu.api_usage  # the writer's calls keep the usage current


def test_the_limit_refusal_counts_as_spent_and_the_guard_can_be_turned_off(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    unguarded = SalesforceReader(client, dataclasses.replace(FIELDS, quota_guard=None), clock=clock)
    cursor = first_poll(emu, unguarded, 50_000)
    emu.set_api_usage(LIMIT)
    with pytest.raises(TransientError):
        list(unguarded.read_changes(cursor))
    assert client.api_usage() == (LIMIT, LIMIT)  # the 403 carries no usage the client parses
    emu.set_api_usage(99_000)
    assert poll(emu, unguarded, cursor)[2] == 1  # no guard: every poll runs
    assert poll(emu, unguarded, cursor)[2] == 1


def test_the_usage_survives_a_relogin(emu: SalesforceEmulator, client: SalesforceClient) -> None:
    client.rest("GET", "limits")
    used = client.api_usage()
    assert used is not None and used[1] == LIMIT
    # What a relogin does: a new simple-salesforce object, which has seen no Sforce-Limit-Info yet.
    client.sf = build_sf(client.sf.session_id, client.sf.sf_instance, client.sf.session, client.version)
    assert client.sf.api_usage == {} and client.api_usage() == used


def test_field_map_polling_guard_settings() -> None:
    assert (FIELDS.quota_guard, FIELDS.slow_interval_seconds) == (0.9, 600.0)
    assert (FieldMap().quota_guard, FieldMap().slow_interval_seconds) == (0.9, 600.0)
