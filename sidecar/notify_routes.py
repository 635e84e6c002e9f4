"""One `Notifier` port over several chat systems: each notification goes to the notifier wired for
its policy route (`Notification.via`). The core never names a chat system here; `sidecar.wiring`
says which notifier serves which route and what to tell the admin when a route has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sidecar.ports import Notification, Notifier, PermanentError


class RoutedNotifier:
    def __init__(self, by_route: Mapping[str, Notifier], unwired: Mapping[str, str] | None = None) -> None:
        """`by_route`: via -> notifier; `unwired`: via -> the fix for a route nobody serves."""
        self._by_route, self._unwired = dict(by_route), dict(unwired or {})

    def _for(self, notification: Notification) -> Notifier:
        notifier = self._by_route.get(notification.via)
        if notifier is None:
            fix = self._unwired.get(notification.via, "configure a notifier for it")
            raise PermanentError(f"no notifier for route via: {notification.via} ({notification.kind}, "
                                 f"lead {notification.lead.crm_id}): {fix}")
        return notifier

    def send(self, notification: Notification, idempotency_key: str) -> str:
        return self._for(notification).send(notification, idempotency_key)

    def send_digest(self, notifications: Sequence[Notification], idempotency_key: str) -> str:
        # noise.shape groups digests per recipient *and* route, so the first names the channel of all.
        return self._for(notifications[0]).send_digest(notifications, idempotency_key)
