"""Process-wide meters for /metrics that the store does not hold: CRM API calls made, the daily API
quota each CRM last reported, and webhook requests answered by route and HTTP status.

The rest of /metrics is read from the store at scrape time (sidecar.metrics); these live in this
process only, like any Prometheus counter: a scrape of each instance gives that instance's counts,
and a restart starts them at zero (Prometheus' rate() handles the reset). Connectors report their
calls here (connectors import the core, never the other way round); the web app's middleware
reports the webhook answers (sidecar.web.counters).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

# Inbound webhook routes: the CRMs' change notifications, Slack's buttons, and pushed signals.
WEBHOOK_PREFIXES = ("/webhooks/", "/slack/", "/api/signals")


@dataclass
class Meters:
    api_calls: Counter[str] = field(default_factory=Counter)  # by CRM ("salesforce", "hubspot")
    quota: dict[str, tuple[int, int]] = field(default_factory=dict)  # CRM -> (used today, daily limit)
    webhooks: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route, HTTP status)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def api_call(self, crm: str, usage: tuple[int, int] | None = None) -> None:
        """One request sent to the CRM's API; `usage` = (used, daily limit) when the answer said."""
        with self._lock:
            self.api_calls[crm] += 1
            if usage is not None:
                self.quota[crm] = usage

    def webhook(self, route: str, status: int) -> None:
        with self._lock:
            self.webhooks[(route, status)] += 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, tuple[int, int]], dict[tuple[str, int], int]]:
        with self._lock:
            return dict(self.api_calls), dict(self.quota), dict(self.webhooks)


METERS = Meters()  # the process's own; tests pass their own to sidecar.metrics.render
