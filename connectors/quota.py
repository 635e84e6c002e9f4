"""The daily API allowance guard, shared by the CRM connectors: polling slows down before the
org's or portal's daily limit is spent.

Admins judge an integration by how much of the daily API allowance it eats, and at the limit every
integration of the org is refused (Salesforce 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit
exceeded.", HubSpot 429 policy DAILY), ours included. Salesforce's REQUEST_LIMIT_EXCEEDED for a
concurrency limit ("ConcurrentRequests", "ConcurrentPerOrgLongTxn") says nothing about the daily
allowance and does not count here (connectors/salesforce/errors.py). Each connector tells the guard
its usage after every call (Salesforce `Sforce-Limit-Info`, HubSpot
`X-HubSpot-RateLimit-Daily[-Remaining]`). At or above `quota_guard`
(a fraction of the daily limit; field map, default 0.9) the reader polls at most once per
`slow_interval_seconds` (default 600), measured on its injected clock: a skipped poll yields
nothing and costs no call, and the cursor stays where it is, so the next poll that runs delivers
everything. A warning names the usage, once per slow interval. Webhook-driven reads and the
writers are not slowed: their effects matter more than polling's latency. Below the guard nothing
changes. The usage seen is that of the last response through the same client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

Usage = Callable[[], tuple[int, int] | None]  # -> (used, daily limit), None while unknown


def describe_interval(interval: timedelta) -> str:
    seconds = interval.total_seconds()
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


class QuotaGuard:
    """Decides, poll by poll, whether a poll may run (`may_poll`); see the module docstring."""

    def __init__(self, usage: Usage, *, guard: float | None, slow_interval: timedelta,
                 clock: Callable[[], datetime], crm: str,
                 logger: logging.Logger | None = None) -> None:
        self.usage = usage
        self.guard = guard  # None: never slow down
        self.slow_interval = slow_interval
        self.clock = clock
        self.crm = crm
        self.log = logger or logging.getLogger(__name__)
        self.skipped = 0  # polls skipped because of the guard
        self._polled_at: datetime | None = None
        self._warned_at: datetime | None = None

    def high(self) -> tuple[int, int] | None:
        """(used, limit) when usage is at or above the guard, else None."""
        usage = self.usage()
        if self.guard is None or usage is None or usage[1] <= 0:
            return None
        return usage if usage[0] >= self.guard * usage[1] else None

    def _within(self, since: datetime | None, now: datetime) -> bool:
        # A clock that went backwards does not hold polling up.
        return since is not None and timedelta(0) <= now - since < self.slow_interval

    def may_poll(self) -> bool:
        now = self.clock()
        high = self.high()
        if high is not None:
            if not self._within(self._warned_at, now):
                self._warned_at = now
                used, limit = high
                self.log.warning("%s API usage %s/%s today: polling slowed to every %s", self.crm,
                                 f"{used:,}", f"{limit:,}", describe_interval(self.slow_interval),
                                 extra={"crm": self.crm.lower(), "api_used": used, "api_limit": limit})
            if self._within(self._polled_at, now):
                self.skipped += 1
                return False
        self._polled_at = now
        return True
