"""Unit tests of the HubSpot rate limiter against the emulator's own accounting of HubSpot's limits
(no HTTP): whatever mix of searches and other calls, nothing the limiter lets through is refused."""

from __future__ import annotations

import pytest

from connectors.emulators.hubspot_limits import RateLimits
from connectors.hubspot.limits import LimitSettings, RateLimiter
from tests.support import VirtualTime


def _replay(pattern: str, settings: LimitSettings, step: float) -> tuple[list[str], RateLimiter, VirtualTime]:
    """Send `pattern` ("s" = search, "g" = other call) through the limiter; each request is then
    admitted (or refused) by the emulator's model of HubSpot at the moment it is sent."""
    time = VirtualTime(1_767_600_000.0)
    limiter = RateLimiter(settings, time.clock, time.sleep)
    server = RateLimits(settings.per_ten_seconds, settings.search_per_second, daily=1_000_000)
    refused = []
    for kind in pattern:
        limiter.before(kind == "s")
        denial = server.admit(time.moment(), is_search=kind == "s")
        if denial is not None:
            refused.append(denial.policy)
        time.now += step  # the round trip and the caller's own work
    return refused, limiter, time


def test_search_held_up_by_the_ten_second_budget_is_counted_when_it_is_sent() -> None:
    # The 4th request (a search) finds the search gate open but the ten-second budget spent, and
    # goes out 10 s later. Stamped in the search gate when that gate alone had room, it would have
    # left the one-second window before it was even sent, letting a third search into HubSpot's
    # window of two: the SECONDLY 429 of the 50k backfill bench.
    refused, limiter, _ = _replay("sggsss" * 5, LimitSettings(per_ten_seconds=3, search_per_second=2), 0.001)
    assert refused == []
    assert limiter.general.waited > 0  # the scenario did make searches wait at the general gate


def test_bench_shaped_mix_at_default_limits_is_never_refused() -> None:
    # The backfill's mix: a search page, then two batch reads of 100 ids, at default limits.
    refused, limiter, time = _replay("sgg" * 300, LimitSettings(), 0.002)
    assert refused == []
    assert sum(time.slept) == pytest.approx(limiter.general.waited + limiter.search.waited)
    assert time.now - 1_767_600_000.0 > 80  # 900 calls at 100 per 10 s: it really was paced


def test_searches_alone_keep_to_the_secondly_budget() -> None:
    refused, limiter, _ = _replay("s" * 40, LimitSettings(search_per_second=4), 0.0)
    assert refused == []
    assert limiter.search.waited > 0 and limiter.general.waited == 0
