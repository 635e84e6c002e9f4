"""Client-side rate limiting shared by every HubSpot call of one account.

HubSpot enforces a rolling 10-second request budget per account (100 by default, more on higher
tiers) and a separate budget for the CRM search endpoints (about 5 per second). A refilling token
bucket can let through more than N requests inside one rolling window (a full burst, then the
refill), which HubSpot answers with 429; so each gate keeps the send times of its last N requests
and waits until the oldest leaves the window: the same rule the server applies.

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

    def acquire(self) -> None:
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.interval:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                pause = self._sent[0] + self.interval - now + _EPSILON
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
        self.throttled = 0  # 429 answers seen (each one retried or surfaced)
        self.policies: Counter[str] = Counter()  # ... by HubSpot policy name
        self.backoff_s = 0.0

    def before(self, is_search: bool) -> None:
        if is_search:  # a search counts against both budgets on HubSpot's side too
            self.search.acquire()
        self.general.acquire()

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
