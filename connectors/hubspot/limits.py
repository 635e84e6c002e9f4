"""Client-side rate limiting shared by every HubSpot call of one account.

HubSpot enforces a rolling 10-second request budget per account (100 by default, more on higher
tiers) and a separate budget for the CRM search endpoints (about 5 per second). A refilling token
bucket can let through more than N requests inside one rolling window (a full burst, then the
refill), which HubSpot answers with 429; so each gate keeps the send times of its last N requests
and waits until the oldest leaves the window: the same rule the server applies.

A search passes both gates, and it must pass them at one instant: the server stamps the request
once, when it arrives. Taking the search gate first and then waiting at the general gate would
record the search in our window up to a second earlier than HubSpot records it, and a later
search would be let through into a window the server still sees as full (the SECONDLY 429 the
50k backfill bench hit). So `RateLimiter.before` waits until every gate it needs has room *now*
and records that same instant in all of them.

Clock and sleep are injected so tests and benchmarks run on virtual time without real waiting.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Clock = Callable[[], float]  # seconds, monotonic enough for spacing requests
Sleep = Callable[[float], None]

# Rounding between float seconds and the server's millisecond clock must never make us early.
_EPSILON = 0.001


class RollingGate:
    """At most `limit` acquisitions in any rolling `interval` seconds; blocks (via sleep) when full."""

    def __init__(self, limit: int, interval: float, clock: Clock, sleep: Sleep) -> None:
        if limit < 1 or interval <= 0:
            raise ValueError("a rate gate needs limit >= 1 and interval > 0")
        self.limit, self.interval = limit, interval
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0  # total seconds spent waiting, for benchmarks and logs

    def wait_s(self, now: float) -> float:
        """Seconds until one more request may be sent (0 = now). The caller serialises access: the
        gate's own lock in `acquire`, the limiter's lock in `RateLimiter.before`."""
        while self._sent and now - self._sent[0] >= self.interval:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            return 0.0
        return self._sent[0] + self.interval - now + _EPSILON

    def record(self, now: float) -> None:
        """Count one request sent at `now` (the caller saw `wait_s(now) == 0` under the same lock)."""
        self._sent.append(now)

    def acquire(self) -> None:
        with self._lock:
            while True:
                now = self._clock()
                pause = self.wait_s(now)
                if pause <= 0:
                    self.record(now)
                    return
                self.waited += pause
                self._sleep(pause)


@dataclass(frozen=True)
class LimitSettings:
    """Per-account budgets. `per_ten_seconds` depends on the HubSpot tier (100 free/starter,
    150-190 professional/enterprise, more with the API add-on); `headroom` leaves room for other
    integrations sharing the account."""

    per_ten_seconds: int = 100
    search_per_second: int = 5
    headroom: float = 1.0
    max_429_retries: int = 5


class RateLimiter:
    """The gates for one HubSpot account plus the 429 back-off rule."""

    def __init__(self, settings: LimitSettings, clock: Clock, sleep: Sleep) -> None:
        self.settings = settings
        self.sleep = sleep
        general = max(1, int(settings.per_ten_seconds * settings.headroom))
        search = max(1, int(settings.search_per_second * settings.headroom))
        self.general = RollingGate(general, 10.0, clock, sleep)
        self.search = RollingGate(search, 1.0, clock, sleep)
        self._clock = clock
        self._lock = threading.Lock()  # one lock over both gates: see the module docstring
        self.throttled = 0  # 429 answers seen (each one retried or surfaced)
        self.policies: Counter[str] = Counter()  # ... by HubSpot policy name
        self.backoff_s = 0.0
        # (used, daily limit) from the last response's X-HubSpot-RateLimit-Daily(-Remaining), shared
        # by every caller of this account; None until a response carried them (see quota.py).
        self.daily_usage: tuple[int, int] | None = None

    def observe(self, headers: Mapping[str, str], body: Mapping[str, object] | None = None) -> None:
        """Note the daily usage a response reports; a 429 of policy DAILY means it is spent."""
        usage = daily_usage(headers)
        if usage is not None:
            self.daily_usage = usage
        if body is not None and body.get("policyName") == "DAILY" and self.daily_usage is not None:
            self.daily_usage = (max(self.daily_usage), self.daily_usage[1])

    def before(self, is_search: bool) -> None:
        """Block until the request may be sent, then count it in every gate at the same instant."""
        # A search counts against both budgets on HubSpot's side too.
        gates = (self.search, self.general) if is_search else (self.general,)
        with self._lock:
            while True:
                now = self._clock()
                waits = [gate.wait_s(now) for gate in gates]
                pause = max(waits)
                if pause <= 0:
                    for gate in gates:
                        gate.record(now)
                    return
                # Charged to the gate that held us up longest, for the benchmark's accounting.
                gates[waits.index(pause)].waited += pause
                self.sleep(pause)

    def backoff(self, headers: Mapping[str, str], body: Mapping[str, object]) -> float:
        """Seconds to wait after a 429 before sending the same request again."""
        self.throttled += 1
        self.policies[str(body.get("policyName") or "unknown")] += 1
        wait = retry_after_seconds(headers, body)
        self.backoff_s += wait
        return wait


def retry_after_seconds(headers: Mapping[str, str], body: Mapping[str, object]) -> float:
    """HubSpot rarely sends Retry-After; its policy name and X-HubSpot-RateLimit-* say how long."""
    lowered = {k.lower(): v for k, v in headers.items()}
    retry_after = lowered.get("retry-after")
    if retry_after and retry_after.replace(".", "", 1).isdigit():
        return float(retry_after)
    policy = str(body.get("policyName") or "")
    if policy == "SECONDLY":
        return 1.0
    if policy == "DAILY":
        return 3600.0  # no point hammering: surface it to the dispatcher's slower retry
    interval = lowered.get("x-hubspot-ratelimit-interval-milliseconds", "")
    return int(interval) / 1000 if interval.isdigit() else 10.0


def daily_usage(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(used, daily limit) from X-HubSpot-RateLimit-Daily and -Daily-Remaining, when both are there."""
    lowered = {k.lower(): str(v).strip() for k, v in headers.items()}
    limit = lowered.get("x-hubspot-ratelimit-daily", "")
    remaining = lowered.get("x-hubspot-ratelimit-daily-remaining", "")
    if not (limit.isdigit() and remaining.isdigit()):
        return None
    return max(0, int(limit) - int(remaining)), int(limit)
