"""The daily API allowance guard (connectors/quota.py) against the HubSpot emulator, in
virtual time."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import FieldMap, load_field_map
from connectors.hubspot.limits import daily_usage
from connectors.hubspot.reader import HubSpotReader
from connectors.hubspot.writer import HubSpotWriter
from sidecar.domain import Crm, ProgressKind
from sidecar.ports import Cursor, LeadContext, TaskRequest, TransientError
from tests.contract.harness import Clock

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
LIMIT = 250_000
FIELDS = FieldMap(portal_id=str(24_681_357))
WARNING = "HubSpot API usage {used}/250,000 today: polling slowed to every 10 minutes"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def reader(api: HubSpotApi, clock: Clock) -> HubSpotReader:
    return HubSpotReader(api, FIELDS, clock=clock)


def used(emulator: HubSpotEmulator) -> int:
    return emulator.daily_usage[0]


def poll(emulator: HubSpotEmulator, reader: HubSpotReader, cursor: Cursor
         ) -> tuple[list[str], Cursor, int]:
    """Lead ids delivered, the last cursor, and the API calls the poll cost."""
    before = used(emulator)
    ids: list[str] = []
    for page in reader.read_changes(cursor):
        ids += [s.crm_id for s in page.snapshots]
        cursor = page.cursor
    return ids, cursor, used(emulator) - before


def first_poll(emulator: HubSpotEmulator, reader: HubSpotReader, calls_today: int) -> tuple[str, Cursor]:
    """One contact, the portal at `calls_today` requests today, then the backfill poll."""
    contact = emulator.insert("contacts", {"email": "early@example.com", "hs_lead_status": "NEW"})
    emulator.set_daily_usage(calls_today, LIMIT)
    ids, cursor, calls = poll(emulator, reader, Cursor())
    assert ids == [contact] and calls > 0
    return contact, cursor


def test_the_emulator_reports_the_daily_usage_and_the_api_reads_it(
    emulator: HubSpotEmulator, api: HubSpotApi, reader: HubSpotReader
) -> None:
    assert api.limiter.daily_usage is None
    emulator.set_daily_usage(1_000, LIMIT)
    reader.read_users()  # any calls (here two pages of owners)
    assert api.limiter.daily_usage == emulator.daily_usage == (1_002, LIMIT)
    assert daily_usage({"x-hubspot-ratelimit-daily": "10", "X-HubSpot-RateLimit-Daily-Remaining": "4"}) == (6, 10)
    assert daily_usage({"X-HubSpot-RateLimit-Daily": "10"}) is None


def test_at_95_percent_a_poll_right_after_a_poll_costs_nothing_until_the_slow_interval(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    _, cursor = first_poll(emulator, reader, 237_500)
    clock.advance(30)
    later = emulator.insert("contacts", {"email": "later@example.com", "hs_lead_status": "NEW"})
    assert poll(emulator, reader, cursor) == ([], cursor, 0)  # skipped: no call, the cursor stays
    clock.advance(569)
    assert poll(emulator, reader, cursor) == ([], cursor, 0)  # 599 s: still skipped
    assert reader.quota.skipped == 2
    clock.advance(1)
    ids, cursor, calls = poll(emulator, reader, cursor)  # 600 s: both sweeps run again
    assert ids == [later] and calls > 0
    assert poll(emulator, reader, cursor) == ([], cursor, 0)


def test_the_engagement_sweep_is_slowed_too(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    contact, cursor = first_poll(emulator, reader, 237_500)
    clock.advance(60)
    call = emulator.insert("calls", {"hs_timestamp": clock().isoformat(), "hs_call_status": "COMPLETED"})
    emulator.associate("calls", call, "contacts", contact)
    searches = emulator.request_counts["search"]
    assert poll(emulator, reader, cursor) == ([], cursor, 0)
    assert emulator.request_counts["search"] == searches  # no engagement (nor lead) search
    clock.advance(540)
    activities = [a for p in reader.read_changes(cursor) for s in p.snapshots for a in s.activities]
    assert [(a.crm_id, a.kind) for a in activities] == [(call, ProgressKind.CALL_LOGGED)]


def test_below_the_guard_every_poll_reads(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock
) -> None:
    _, cursor = first_poll(emulator, reader, 200_000)
    for i in range(3):
        clock.advance(5)
        contact = emulator.insert("contacts", {"email": f"c{i}@example.com"})
        ids, cursor, calls = poll(emulator, reader, cursor)
        assert contact in ids and calls > 0
    quiet = poll(emulator, reader, cursor)
    # four engagement searches (calls, emails, meetings, first-response tasks) and one lead search, as ever
    assert quiet[0] == [] and quiet[2] == 5
    assert reader.quota.skipped == 0


def test_the_warning_names_the_usage_once_per_slow_interval(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connectors.quota")
    _, cursor = first_poll(emulator, reader, 230_000)
    usage = f"{used(emulator):,}"

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "connectors.quota"]

    assert warnings() == []
    for _ in range(3):
        clock.advance(60)
        assert poll(emulator, reader, cursor)[2] == 0
    assert warnings() == [WARNING.format(used=usage)]
    clock.advance(480)  # 600 s after the first warning, and the poll runs
    assert poll(emulator, reader, cursor)[2] > 0
    clock.advance(60)
    assert poll(emulator, reader, cursor)[2] == 0
    assert warnings() == [WARNING.format(used=usage)] * 2


def test_webhook_reads_and_writes_go_on_at_the_guard(
    emulator: HubSpotEmulator, api: HubSpotApi, reader: HubSpotReader
) -> None:
    contact, cursor = first_poll(emulator, reader, 240_000)
    assert poll(emulator, reader, cursor)[2] == 0
    before = used(emulator)
    [snapshot] = reader.read_leads([contact])
    assert snapshot.crm_id == contact
    writer = HubSpotWriter(api, FIELDS)
    writer.ensure_properties()
    context = LeadContext(Crm.HUBSPOT, contact, "Ada Lovelace", "Analytical", "US-East", "web_form", None, "NEW",
                          "70000001", None, f"https://app.hubspot.com/contacts/24681357/record/0-1/{contact}")
    task = writer.create_task(TaskRequest(context, "70000001", "Call Ada now", "Overdue",
                                          START + timedelta(hours=1), "high"), "k-1")
    assert task and used(emulator) > before
    assert api.limiter.daily_usage == emulator.daily_usage


def test_a_daily_429_counts_as_spent_and_the_guard_can_be_turned_off(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    unguarded = HubSpotReader(api, dataclasses.replace(FIELDS, quota_guard=None), clock=clock)
    _, cursor = first_poll(emulator, unguarded, 100_000)
    emulator.set_daily_usage(LIMIT)
    with pytest.raises(TransientError):
        list(unguarded.read_changes(cursor))
    assert api.limiter.daily_usage == (LIMIT, LIMIT)
    emulator.set_daily_usage(249_000)
    assert poll(emulator, unguarded, cursor)[2] > 0
    assert poll(emulator, unguarded, cursor)[2] > 0


def test_polling_guard_settings_load_and_are_checked(tmp_path: Path) -> None:
    example = load_field_map(ROOT / "config" / "hubspot.fields.example.yaml")
    assert (example.quota_guard, example.slow_interval_seconds) == (0.9, 600.0)

    def load(polling: Mapping[str, object]) -> FieldMap:
        path = tmp_path / "fields.yaml"
        path.write_text("polling:\n" + "".join(f"  {k}: {v}\n" for k, v in polling.items()))
        return load_field_map(path)

    assert load({"quota_guard": "null"}).quota_guard is None
    assert load({"quota_guard": 0.75, "slow_interval_seconds": 90}).slow_interval_seconds == 90.0
    for bad in ({"quota_guard": 0}, {"quota_guard": 1.5}, {"quota_guard": "yes"}, {"slow_interval_seconds": 0}):
        with pytest.raises(ValueError, match="polling"):
            load(bad)
