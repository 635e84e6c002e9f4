"""Contract tests: the search sweep's restarts at the result cap, against the HubSpot emulator.

The emulator's cap is lowered from 10,000 to 1,000 (and the page from 200 to 100) so that many
restarts happen with a few thousand records; the restart logic does not depend on the numbers.
Both tie orders are exercised: ascending id (what the emulator does by default) and a fixed order
unrelated to the id (HubSpot documents none, so the sweep must not lose records under it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.search import Sweep, SweepPage
from tests.contract.harness import Clock, Serve, make_api

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
CAP, PAGE = 1_000, 100


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture(params=[True, False], ids=["ties-by-id", "ties-scrambled"])
def emulator(request: pytest.FixtureRequest, serve: Serve, clock: Clock) -> HubSpotEmulator:
    return serve(HubSpotEmulator(clock=clock, ties_by_id=request.param, search_result_cap=CAP))


def make_sweep(emulator: HubSpotEmulator, clock: Clock) -> Sweep:
    return Sweep(make_api(emulator, clock), "contacts", "lastmodifieddate", [], page_size=PAGE, result_cap=CAP)


def seed(emulator: HubSpotEmulator, clock: Clock, per_stamp: list[int]) -> list[str]:
    """per_stamp[i] contacts created at second i (one stamp each, like a bulk import)."""
    ids: list[str] = []
    for count in per_stamp:
        ids += emulator.insert_many("contacts", ({"email": f"c{len(ids) + i}@example.com"} for i in range(count)))
        clock.advance(1)
    return ids


def read_ids(pages: Iterator[SweepPage]) -> list[str]:
    return [str(r["id"]) for page in pages for r in page.records]


def test_ties_straddling_the_cap_are_read_once(emulator: HubSpotEmulator, clock: Clock) -> None:
    # 300 records a second: every 1,000-result window ends 100 records into a stamp's 300.
    ids = seed(emulator, clock, [300] * 14)
    sweep = make_sweep(emulator, clock)
    got = read_ids(sweep.pages(None))
    assert sorted(got, key=int) == ids  # none lost, none twice
    assert sweep.restarts >= 3  # the cap was met, again and again
    if emulator.ties_by_id:
        # Each restart starts exactly at (stamp, last id): one count call, nothing read twice.
        assert sweep.restarts == 4 and sweep.reread == 0 and sweep.counts == 4
        assert sweep.searches == len(ids) // PAGE + sweep.counts
    else:
        # Out-of-order ties are noticed and the boundary stamp is read by id: bounded by one
        # stamp's records (300 = 3 pages) a restart, plus at most one count call in the sweep.
        assert sweep.ties_by_id is False
        assert sweep.reread <= sweep.restarts * 300
        assert sweep.searches <= len(ids) // PAGE + sweep.restarts * 3 + 1


def test_more_ties_than_one_window_holds(emulator: HubSpotEmulator, clock: Clock) -> None:
    ids = seed(emulator, clock, [150, 2_500, 350])
    sweep = make_sweep(emulator, clock)
    pages = list(sweep.pages(None))
    got = read_ids(iter(pages))
    assert sorted(got, key=int) == ids
    assert sweep.restarts >= 1
    assert sweep.searches <= len(ids) // PAGE + 2 * (2_500 // PAGE + 1)
    last = pages[-1]
    assert last.at_ms == int((START + timedelta(seconds=2)).timestamp() * 1000) and len(last.ids_at) == 350


def test_a_sweep_resumed_from_any_page_cursor_loses_and_repeats_nothing(
    emulator: HubSpotEmulator, clock: Clock
) -> None:
    ids = seed(emulator, clock, [450, 700, 120, 900, 60])
    cursors = [(p.at_ms, p.ids_at) for p in make_sweep(emulator, clock).pages(None)]
    for index in (2, 9, 13, len(cursors) - 2):  # cursors inside a tie group and at a window's end
        head = make_sweep(emulator, clock)
        first = []
        for n, page in enumerate(head.pages(None)):
            first += [str(r["id"]) for r in page.records]
            if n == index:
                break
        at_ms, seen = cursors[index]
        tail = make_sweep(emulator, clock)
        rest = read_ids(tail.pages(at_ms, seen))
        assert sorted(first + rest, key=int) == ids, f"resumed after page {index}"
        # Resuming and every restart after it each serve again fewer known records than a page.
        if emulator.ties_by_id:
            assert tail.reread < PAGE * (tail.restarts + 1)


def test_records_modified_during_the_sweep_are_read_again_and_none_is_lost(
    emulator: HubSpotEmulator, clock: Clock
) -> None:
    ids = seed(emulator, clock, [400] * 6)
    sweep = make_sweep(emulator, clock)
    got: list[str] = []
    for n, page in enumerate(sweep.pages(None)):
        got += [str(r["id"]) for r in page.records]
        if n == 12:  # in the second window: edit one record of the first window and one unread
            emulator.update_as_user("contacts", ids[5], {"firstname": "Again"})
            emulator.update_as_user("contacts", ids[-5], {"firstname": "Later"})
    assert set(got) == set(ids)
    assert got.count(ids[5]) == 2 and got.count(ids[-5]) == 1  # read again at its new stamp
    assert got[-1] in (ids[5], ids[-5])  # both now carry the newest stamp
