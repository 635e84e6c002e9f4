"""Backfill (connectors/salesforce/backfill.py) against the loopback emulator: Bulk API 2.0 from
10,000 leads up, REST below, one mapping with polling, cursors safe to commit after every page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.salesforce.backfill import BackfillStats, backfill
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.fields import FieldMap
from connectors.salesforce.reader import SalesforceReader
from sidecar.domain import LeadSnapshot, ProgressKind
from sidecar.ports import ChangePage, Cursor
from tests.contract.harness import Clock, Serve

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
# This emulated org has no Task key field, and its field map says so (writer.key_field: null), as
# `sidecar check` advises: the readers then select no key (with the default map they would find out
# with one refused call, see test_a_missing_task_key_field_costs_one_refused_query_then_polls_without_it).
FIELDS = FieldMap(score="Lead_Score__c", flags={"Sanctions_Match__c": "sanctions_match"}, key_field=None)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    emulator.add_field("Task", "CompletedDateTime", "datetime")
    emulator.add_field("Lead", "Lead_Score__c", "double")
    emulator.add_field("Lead", "Sanctions_Match__c", "boolean")
    return serve(emulator, tls.server_context)


class Run:
    """Collects what backfill hands out; `sleeps` proves Bulk polling waited through the injected sleep."""

    def __init__(self) -> None:
        self.pages: list[ChangePage] = []
        self.progress: list[tuple[int, int]] = []
        self.sleeps: list[float] = []

    def __call__(self, client: SalesforceClient, clock: Clock, since: datetime | None = None, *,
                 bulk_threshold: int = 10_000, max_records: int = 50_000) -> BackfillStats:
        return backfill(client, FIELDS, since, self.pages.append,
                        lambda done, total: self.progress.append((done, total)),
                        clock=clock, sleep=self.sleeps.append, bulk_threshold=bulk_threshold,
                        max_records=max_records)

    @property
    def ids(self) -> list[str]:
        return [s.crm_id for p in self.pages for s in p.snapshots]


def insert_leads(emu: SalesforceEmulator, clock: Clock, count: int, per_stamp: int) -> list[str]:
    ids = []
    for index in range(count):
        if index % per_stamp == 0:
            clock.advance(seconds=1)  # `per_stamp` leads share each SystemModstamp
        ids.append(emu.insert("Lead", {"LastName": f"L{index}", "Company": "C", "Country": "India"}))
    return ids


def jobs_calls(emu: SalesforceEmulator) -> dict[str, int]:
    paths = [(e["method"], e["path"]) for e in emu.log.entries]
    return {
        "create": sum(1 for m, p in paths if m == "POST" and p.endswith("/jobs/query")),
        "status": sum(1 for m, p in paths if m == "GET" and "/jobs/query/750" in p and "/results" not in p),
        "results": sum(1 for m, p in paths if p.endswith("/results")),
    }


def test_backfill_of_12000_leads_goes_through_bulk(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    ids = insert_leads(emu, clock, 12_000, per_stamp=700)  # ties straddle the 2,000-row pages
    clock.advance(minutes=1)
    emu.update_as_user("Lead", ids[0], {"Status": "Working - Contacted"})  # id order != stamp order
    emu.reset_api_usage()
    emu.log.clear()
    run = Run()
    stats = run(client, clock)
    assert (stats.via, stats.total, stats.snapshots) == ("bulk", 12_000, 12_000)
    assert [len(p.snapshots) for p in run.pages] == [2000] * 6
    assert sorted(run.ids) == sorted(ids) and run.ids[-1] == ids[0]  # sorted by stamp, not by id
    stamps = [s.crm_modified_at for p in run.pages for s in p.snapshots]
    assert stamps == sorted(stamps)
    # Jobs for Leads, LeadHistory, Tasks and Events; each polled twice (the emulator completes a job on
    # its second status request), every poll after an injected sleep; one result set each.
    assert jobs_calls(emu) == {"create": 4, "status": 8, "results": 4}
    assert run.sleeps == [2.0, 4.0] * 4
    lead_job = emu.log.entries[1]["body"]
    assert lead_job["operation"] == "query" and "ORDER BY" not in lead_job["query"]
    assert emu.api_usage[0] == stats.api_calls == 1 + 4 + 8 + 4  # COUNT() + jobs
    assert run.progress[-1] == (12_000, 12_000) and len(run.progress) == 6
    # The last cursor is where polling carries on: nothing is delivered again.
    assert stats.cursor.at == clock.now
    reader = SalesforceReader(client, FIELDS, clock=clock)
    assert [s for p in reader.read_changes(stats.cursor) for s in p.snapshots] == []


def test_bulk_backfill_cursor_after_any_page_loses_nothing(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    ids = insert_leads(emu, clock, 5_000, per_stamp=700)
    run = Run()
    run(client, clock, bulk_threshold=1)
    assert [len(p.snapshots) for p in run.pages] == [2000, 2000, 1000]
    # Page 1 ends inside a group of leads sharing one stamp: the cursor must not skip the rest of it.
    first = set(s.crm_id for s in run.pages[0].snapshots)
    reader = SalesforceReader(client, FIELDS, clock=clock)
    resumed = [s.crm_id for p in reader.read_changes(run.pages[0].cursor) for s in p.snapshots]
    assert sorted(resumed) == sorted(set(ids) - first)


def test_backfill_of_500_leads_goes_through_rest(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    ids = insert_leads(emu, clock, 500, per_stamp=100)
    emu.reset_api_usage()
    emu.log.clear()
    run = Run()
    stats = run(client, clock)
    assert (stats.via, stats.total, sorted(run.ids)) == ("rest", 500, sorted(ids))
    assert jobs_calls(emu) == {"create": 0, "status": 0, "results": 0} and run.sleeps == []
    # COUNT(), then one composite call: the Lead page and the related objects' first pages.
    assert [e["path"].rstrip("/").rsplit("/", 1)[1] for e in emu.log.entries] == ["query", "composite"]
    assert emu.api_usage[0] == stats.api_calls == 2
    assert run.progress == [(500, 500)]


@pytest.mark.parametrize("bulk_threshold", [1, 10_000], ids=["bulk", "rest"])
def test_backfill_since_takes_leads_changed_or_progressed_since(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock, bulk_threshold: int
) -> None:
    old = emu.insert("Lead", {"LastName": "Old", "Company": "C"})
    called = emu.insert("Lead", {"LastName": "Called", "Company": "C"})
    clock.advance(hours=1)
    since = clock.now
    clock.advance(minutes=5)
    fresh = emu.insert("Lead", {"LastName": "Fresh", "Company": "C"})
    emu.insert("Task", {"WhoId": called, "Subject": "Call", "Status": "Completed", "TaskSubtype": "Call",
                        "CompletedDateTime": clock.now.isoformat()})
    run = Run()
    stats = run(client, clock, since, bulk_threshold=bulk_threshold)
    assert stats.via == ("bulk" if bulk_threshold == 1 else "rest")
    assert sorted(run.ids) == sorted([fresh, called]) and old not in run.ids
    assert stats.total == 1  # COUNT() sizes Leads stamped since; `called` is announced by its Task
    [snap] = [s for p in run.pages for s in p.snapshots if s.crm_id == called]
    assert [a.kind for a in snap.activities] == [ProgressKind.CALL_LOGGED]
    assert run.progress[-1] == (2, 2)


def polled(client: SalesforceClient, clock: Clock, ids: list[str]) -> dict[str, LeadSnapshot]:
    reader = SalesforceReader(client, FIELDS, clock=clock)
    by_poll = {s.crm_id: s for p in reader.read_changes(Cursor()) for s in p.snapshots}
    assert by_poll == {s.crm_id: s for s in reader.read_leads(ids)}  # both polling paths agree
    return by_poll


@pytest.mark.parametrize("bulk_threshold", [1, 10_000], ids=["bulk", "rest"])
def test_backfill_snapshots_equal_what_polling_produces(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock, bulk_threshold: int
) -> None:
    rep = emu.add_user("Grace", "Hopper")
    rich = emu.insert("Lead", {"FirstName": "Ada", "LastName": "Lovelace", "Company": "Engines",
                               "Email": "ada@example.com", "Country": "Germany", "LeadSource": "Web",
                               "Lead_Score__c": 87, "Sanctions_Match__c": True})
    bare = emu.insert("Lead", {"LastName": "Nobody", "Company": "C", "Sanctions_Match__c": False})
    won = emu.insert("Lead", {"LastName": "Won", "Company": "C", "Lead_Score__c": 12.5})
    clock.advance(minutes=7)
    emu.update_as_user("Lead", rich, {"Status": "Working - Contacted"})
    clock.advance(minutes=2)
    emu.update_as_user("Lead", rich, {"OwnerId": rep})
    emu.system_update("Lead", won, {"IsConverted": True})
    emu.insert("Task", {"WhoId": rich, "Subject": "Call", "Status": "Completed", "TaskSubtype": "Call",
                        "CompletedDateTime": (clock.now - timedelta(minutes=1)).isoformat(), "OwnerId": rep})
    emu.insert("Task", {"WhoId": bare, "Subject": "Mail", "Status": "Completed", "TaskSubtype": "Email"})
    emu.insert("Event", {"WhoId": rich, "Subject": "Demo", "EndDateTime": (START - timedelta(hours=1)).isoformat()})
    emu.insert("Event", {"WhoId": rich, "Subject": "Later", "EndDateTime": (START + timedelta(days=1)).isoformat()})
    clock.advance(minutes=1)
    run = Run()
    stats = run(client, clock, bulk_threshold=bulk_threshold)
    assert stats.via == ("bulk" if bulk_threshold == 1 else "rest")
    snapshots = {s.crm_id: s for p in run.pages for s in p.snapshots}
    assert snapshots == polled(client, clock, [rich, bare, won])
    # And the mapping really had something to get right in each of these fields:
    ada = snapshots[rich]
    assert (ada.score, ada.flags, ada.owner_id, ada.market) == (87.0, frozenset({"sanctions_match"}), rep, "Germany")
    assert [a.kind for a in ada.activities] == [ProgressKind.MEETING_HELD, ProgressKind.CALL_LOGGED]
    assert ada.status_changed_at == START + timedelta(minutes=7) and ada.email == "ada@example.com"
    assert snapshots[won].crm_status == "Closed - Converted" and snapshots[won].score == 12.5
    assert snapshots[bare].flags == frozenset() and snapshots[bare].score is None
    assert snapshots[bare].company == "C" and snapshots[bare].name == "Nobody"


def test_a_failed_bulk_job_is_transient(emu: SalesforceEmulator, client: SalesforceClient, clock: Clock) -> None:
    from sidecar.ports import TransientError

    emu.insert("Lead", {"LastName": "X", "Company": "C"})
    emu.faults.add("server_error", next_n=1, path_prefix="/services/data/v59.0/jobs/query/750")
    with pytest.raises(TransientError, match="SERVER_UNAVAILABLE"):
        Run()(client, clock, bulk_threshold=1)


def test_bulk_results_are_fetched_in_max_records_sets(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    ids = insert_leads(emu, clock, 450, per_stamp=450)
    emu.log.clear()
    run = Run()
    run(client, clock, bulk_threshold=1, max_records=200)
    assert sorted(run.ids) == sorted(ids)
    lead_sets = [e for e in emu.log.entries if e["path"].endswith("/results")][:3]
    assert [e["query"].get("locator") for e in lead_sets] == [None, ["MjAw"], ["NDAw"]]  # base64 "200", "400"
    assert all(e["query"]["maxRecords"] == ["200"] for e in lead_sets)

