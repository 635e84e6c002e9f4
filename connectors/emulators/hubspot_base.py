"""What the pieces of the HubSpot emulator share: `HubSpotBase`, the state the request mixins
(`hubspot_objects`, `hubspot_catalog`) find on `HubSpotEmulator`, declared here for the type
checker, and the helpers they parse query arguments and render records with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.emulators.http import Request
from connectors.emulators.hubspot_schema import OBJECT_TYPES, ApiError, resolve_type
from connectors.emulators.hubspot_store import Record, Store
from connectors.emulators.hubspot_webhooks import WebhookOutbox

_KNOWN_TYPES = {alias for t in OBJECT_TYPES.values() for alias in (t.name, t.type_id, t.singular)}


class HubSpotBase:
    # Provided by HubSpotEmulator / the Emulator base.
    clock: Callable[[], datetime]
    store: Store
    webhooks: WebhookOutbox | None
    search_visible_at: dict[tuple[str, int], datetime]
    search_lag_s: float
    search_result_cap: int
    ties_by_id: bool

    if TYPE_CHECKING:  # the Emulator base's property; nothing here shadows it at run time
        @property
        def url(self) -> str:
            raise NotImplementedError

    @staticmethod
    def _csv(request: Request, name: str) -> list[str]:
        # The client sends lists as repeated keys ("multi"); hand-written calls use commas.
        return [part for value in request.query.get(name, []) for part in value.split(",") if part]

    @staticmethod
    def _flag(request: Request, name: str) -> bool:
        return (request.arg(name) or "false").lower() == "true"

    @staticmethod
    def _int_arg(request: Request, name: str, default: int, maximum: int) -> int:
        raw = request.arg(name)
        try:
            value = int(raw) if raw else default
        except ValueError:
            raise ApiError(400, "VALIDATION_ERROR", f"{name} must be an integer") from None
        if not 0 < value <= maximum:
            raise ApiError(400, "VALIDATION_ERROR", f"{name} must be between 1 and {maximum}")
        return value

    def _render_for(self, request: Request, record: Record) -> dict[str, Any]:
        return self.store.render(
            record, self._csv(request, "properties") or None, self._csv(request, "propertiesWithHistory"),
            [resolve_type(t) for t in self._csv(request, "associations") if t.lower() in _KNOWN_TYPES],
        )

    def _next_link(self, path: str, after: str) -> dict[str, Any]:
        return {"next": {"after": after, "link": f"{self.url}{path}?after={after}"}}
