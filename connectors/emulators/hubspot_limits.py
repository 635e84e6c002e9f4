"""HubSpot's per-account rate limits, counted on the emulator's injected (virtual) clock.

Three policies, as HubSpot enforces them for a private app:
- TEN_SECONDLY_ROLLING: N requests per rolling 10 s (default 100), reported on every response in
  the X-HubSpot-RateLimit-* headers;
- SECONDLY: the CRM search endpoints' own limit (about 5 requests/s per account);
- DAILY: requests per UTC day.
Requests refused with 429 are not counted: a client backing off must be able to recover once the
window has moved on, whatever it retried meanwhile.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class RollingWindow:
    limit: int
    interval: timedelta
    hits: deque[datetime] = field(default_factory=deque)

    def _expire(self, now: datetime) -> None:
        while self.hits and now - self.hits[0] >= self.interval:
            self.hits.popleft()

    def remaining(self, now: datetime) -> int:
        self._expire(now)
        return max(0, self.limit - len(self.hits))

    def acquire(self, now: datetime) -> bool:
        if self.remaining(now) <= 0:
            return False
        self.hits.append(now)
        return True

    def seconds_until_free(self, now: datetime) -> int:
        self._expire(now)
        if len(self.hits) < self.limit:
            return 0
        return max(1, math.ceil((self.hits[0] + self.interval - now).total_seconds()))


@dataclass(frozen=True)
class Denial:
    policy: str  # TEN_SECONDLY_ROLLING, SECONDLY or DAILY
    message: str
    retry_after_s: int


class RateLimits:
    def __init__(self, per_ten_seconds: int, search_per_second: int, daily: int) -> None:
        self.ten_secondly = RollingWindow(per_ten_seconds, timedelta(seconds=10))
        self.search = RollingWindow(search_per_second, timedelta(seconds=1))
        self.daily = daily
        self._day: str | None = None
        self._daily_used = 0

    def _roll_day(self, now: datetime) -> None:
        day = now.date().isoformat()
        if day != self._day:  # HubSpot resets the daily counter at midnight (account time zone)
            self._day, self._daily_used = day, 0

    def admit(self, now: datetime, is_search: bool) -> Denial | None:
        self._roll_day(now)
        if self._daily_used >= self.daily:
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
            return Denial("DAILY", "You have reached your daily limit.",
                          math.ceil((midnight - now).total_seconds()))
        if is_search and self.search.remaining(now) <= 0:
            return Denial("SECONDLY", "You have reached your secondly limit.",
                          self.search.seconds_until_free(now))
        if not self.ten_secondly.acquire(now):
            return Denial("TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.",
                          self.ten_secondly.seconds_until_free(now))
        if is_search:
            self.search.acquire(now)
        self._daily_used += 1
        return None

    def daily_used(self, now: datetime) -> int:
        self._roll_day(now)
        return self._daily_used

    def set_daily_used(self, now: datetime, used: int) -> None:
        """Requests counted against today's limit (as if other apps of the account had spent them)."""
        self._roll_day(now)
        self._daily_used = max(0, used)

    def headers(self, now: datetime) -> dict[str, str]:
        self._roll_day(now)
        interval_ms = self.ten_secondly.interval // timedelta(milliseconds=1)
        return {
            "X-HubSpot-RateLimit-Max": str(self.ten_secondly.limit),
            "X-HubSpot-RateLimit-Remaining": str(self.ten_secondly.remaining(now)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(interval_ms),
            "X-HubSpot-RateLimit-Daily": str(self.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily - self._daily_used)),
        }
