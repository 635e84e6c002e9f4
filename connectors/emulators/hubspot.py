"""Loopback emulator of the HubSpot CRM v3 API, good enough for the unmodified hubspot-api-client.

Covers what the sidecar uses: objects (contacts, leads, tasks, notes, calls, emails, meetings)
with CRUD, search, batch and property history; v3/v4 associations; owners; properties; the
account rate limits; and signed webhooks v3 delivery. Response bodies carry every field the
client's generated models require, since a missing one fails deserialisation client-side.

This module holds authentication, scopes, rate limiting and routing. The pieces live in siblings:
`hubspot_objects` (object, search and batch endpoints), `hubspot_catalog` (associations v4, owners,
properties), `hubspot_base` (what those share), `hubspot_store` (data), `hubspot_search` (filter
semantics), `hubspot_limits` (rate limits), `hubspot_webhooks` (delivery and signatures) and
`hubspot_helpers` (seeding/inspection helpers for tests and the demo), `hubspot_merges` (record merges).
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connectors.emulators.http import Emulator, Request, Response
from connectors.emulators.hubspot_catalog import OWNERS_MAX as OWNERS_MAX
from connectors.emulators.hubspot_catalog import HubSpotCatalog
from connectors.emulators.hubspot_helpers import DEFAULT_TOKEN, HubSpotHelpers
from connectors.emulators.hubspot_limits import Denial, RateLimits
from connectors.emulators.hubspot_merges import HubSpotMerges
from connectors.emulators.hubspot_objects import BATCH_MAX as BATCH_MAX
from connectors.emulators.hubspot_objects import LIST_MAX as LIST_MAX
from connectors.emulators.hubspot_objects import HubSpotObjects
from connectors.emulators.hubspot_schema import ApiError, resolve_type
from connectors.emulators.hubspot_search import MAX_SEARCH_RESULTS, SearchError
from connectors.emulators.hubspot_store import Store
from connectors.emulators.hubspot_webhooks import WebhookOutbox, sign_v3

__all__ = ["DEFAULT_TOKEN", "HubSpotEmulator", "sign_v3"]


class HubSpotEmulator(HubSpotObjects, HubSpotCatalog, HubSpotHelpers, HubSpotMerges, Emulator):
    service = "hubspot"

    def __init__(
        self,
        seed: int = 0,
        clock: Callable[[], datetime] | None = None,
        *,
        access_token: str = DEFAULT_TOKEN,
        portal_id: int = 24_681_357,
        per_ten_seconds: int = 100,
        search_per_second: int = 5,
        daily_limit: int = 250_000,
        retry_after_header: bool = False,
        ties_by_id: bool = True,
        search_result_cap: int = MAX_SEARCH_RESULTS,
    ) -> None:
        super().__init__(seed, clock)
        self.portal_id = portal_id
        self.tokens = {access_token}
        self.expired_tokens: set[str] = set()
        # Tokens limited to some scopes (`add_token(..., scopes=...)`); any other token has them all.
        self.token_scopes: dict[str, frozenset[str]] = {}
        self.limits = RateLimits(per_ten_seconds, search_per_second, daily_limit)
        # HubSpot does not document Retry-After on 429s; off by default, on to exercise clients
        # (e.g. urllib3's respect_retry_after_header) that rely on it.
        self.retry_after_header = retry_after_header
        # Search results sharing the sorted value: ascending id (what clients tend to observe), or
        # a fixed order unrelated to the id (allowed too: HubSpot documents none).
        self.ties_by_id = ties_by_id
        self.search_result_cap = search_result_cap  # HubSpot's is 10,000; lower it in tests
        # Fault: search's index lags writes (HubSpot documents it as eventually consistent). A record
        # listed here stays out of search results until that moment; reads by id see it at once.
        self.search_visible_at: dict[tuple[str, int], datetime] = {}
        # Index lag for every created record: it reaches search this many seconds after its
        # creation (0: at once). HubSpot's search is eventually consistent; third-party docs
        # (Locoia's HubSpot connector notes) put the lag at "several seconds".
        self.search_lag_s = 0.0
        # Fault: writes that are applied but whose answer is lost (`lose_answers`).
        self.lost_answers: list[list[Any]] = []
        self.store = Store()
        self.store.portal_id = portal_id
        self.request_counts: Counter[str] = Counter()
        self.webhooks: WebhookOutbox | None = None
        self._lock = threading.RLock()
        self._random = random.Random(seed)
        self._routes()

    # -- plumbing --------------------------------------------------------------------------------

    def _routes(self) -> None:
        obj = r"/crm/v3/objects/(?P<type>[^/]+)"
        add = self.router.add
        add("POST", obj + r"/search", self._search)
        add("POST", obj + r"/batch/(?P<op>read|create|update|archive)", self._batch)
        add("GET", obj, self._list)
        add("POST", obj, self._create)
        add("GET", obj + r"/(?P<id>[^/]+)", self._read)
        add("PATCH", obj + r"/(?P<id>[^/]+)", self._update)
        add("DELETE", obj + r"/(?P<id>[^/]+)", self._archive)
        v4 = r"/crm/v4/objects/(?P<type>[^/]+)/(?P<id>\d+)/associations/(?P<to>[^/]+)"
        add("GET", v4, self._v4_list)
        add("PUT", v4 + r"/(?P<to_id>\d+)", self._v4_create)
        add("POST", r"/crm/v4/associations/(?P<from_type>[^/]+)/(?P<to>[^/]+)/batch/read", self._v4_batch_read)
        add("GET", r"/crm/v3/owners", self._owners)
        add("GET", r"/crm/v3/owners/(?P<id>[^/]+)", self._owner)
        add("GET", r"/crm/v3/properties/(?P<type>[^/]+)", self._properties)
        add("POST", r"/crm/v3/properties/(?P<type>[^/]+)", self._create_property)
        add("GET", r"/crm/v3/properties/(?P<type>[^/]+)/(?P<name>[^/]+)", self._property)

    def _correlation_id(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _error(self, status: int, category: str, message: str, **extra: Any) -> Response:
        body = {"status": "error", "message": message, "correlationId": self._correlation_id(),
                "category": category, **extra}
        return Response(status, body)

    def _rate_limited(self, denial: Denial) -> Response:
        body = {"status": "error", "message": denial.message, "errorType": "RATE_LIMIT",
                "correlationId": self._correlation_id(), "policyName": denial.policy}
        headers = self.limits.headers(self.clock())
        if self.retry_after_header:
            headers["Retry-After"] = str(denial.retry_after_s)
        return Response(429, body, headers)

    def fault_response(self, kind: str, request: Request) -> Response:
        if kind == "rate_limit":
            return self._rate_limited(Denial("TEN_SECONDLY_ROLLING",
                                             "You have reached your ten_secondly_rolling limit.", 10))
        if kind == "expired_session":
            return self._unauthenticated()
        if kind == "timeout":
            return self._error(504, "GATEWAY_TIMEOUT", "The request timed out.")
        return self._error(502, "BAD_GATEWAY", "HubSpot is temporarily unavailable.")

    def _missing_scope(self, scope: str) -> Response:
        return self._error(
            403, "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call. Read more about required "
            "scopes here: https://developers.hubspot.com/scopes.",
            errors=[{"message": "One or more of the following scopes are required.",
                     "context": {"requiredGranularScopes": [scope]}}],
            links={"scopes": "https://developers.hubspot.com/scopes"},
        )

    def _unauthenticated(self) -> Response:
        return self._error(
            401, "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
            "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )

    def handle(self, request: Request) -> Response:
        with self._lock:
            kind = "search" if request.path.endswith("/search") else (
                "batch" if "/batch/" in request.path else "other")
            self.request_counts[kind] += 1
            auth = request.headers.get("authorization", "")
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            if token in self.expired_tokens:
                return self._error(401, "EXPIRED_AUTHENTICATION",
                                   "The OAuth token used to make this call expired.")
            if token not in self.tokens:
                return self._unauthenticated()  # unattributable calls count against no account
            now = self.clock()
            denial = self.limits.admit(now, is_search=kind == "search")
            if denial is not None:
                return self._rate_limited(denial)
            granted = self.token_scopes.get(token)
            needed = required_scope(request.method, request.path)
            if granted is not None and needed is not None and needed not in granted:
                return self._missing_scope(needed)
            try:
                response = self.router.dispatch(request)
                if response.status < 300:
                    response = self._maybe_lose(request, response)
            except ApiError as exc:
                response = self._error(exc.status, exc.category, exc.message, **exc.extra)
            except SearchError as exc:
                response = self._error(400, "VALIDATION_ERROR", str(exc))
            if response.status in (404, 405) and isinstance(response.body, dict) and "error" in response.body:
                message = f"No route for {request.method} {request.path}"
                response = self._error(404, "OBJECT_NOT_FOUND", message)
            response.headers.update(self.limits.headers(now))
            return response


_OBJECT_PATH = re.compile(r"/crm/v[34]/(?P<kind>objects|properties)/(?P<type>[^/]+)")


def required_scope(method: str, path: str) -> str | None:
    """The granular scope a private app needs for a request, as HubSpot names it. Engagements
    (tasks, notes, calls...) are covered by the contacts scopes; property definitions by
    crm.schemas.<object>.read/write."""
    if path.startswith("/crm/v3/owners"):
        return "crm.objects.owners.read"
    match = _OBJECT_PATH.match(path)
    if match is None and path.startswith("/crm/v4/associations/") and path.endswith("/batch/read"):
        return "crm.objects.contacts.read"  # reading links of contacts and their engagements
    if match is None:
        return None
    try:
        object_type = resolve_type(match["type"]).name
    except ApiError:
        return None
    access = "read" if method == "GET" or path.endswith(("/search", "/batch/read")) else "write"
    if match["kind"] == "properties":
        return f"crm.schemas.{object_type}.{access}"
    scoped = object_type if object_type in ("contacts", "leads") else "contacts"
    return f"crm.objects.{scoped}.{access}"
