"""Test and demo side of the HubSpot emulator: seeding data without HTTP, inspecting it, and
driving webhook delivery. Mixed into `HubSpotEmulator`; none of this is part of HubSpot's API, so
none of it is rate limited or authenticated.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests

from connectors.emulators.hubspot_limits import RateLimits
from connectors.emulators.hubspot_schema import OBJECT_TYPES, ObjectType, resolve_type
from connectors.emulators.hubspot_store import Owner, Record, Store
from connectors.emulators.hubspot_webhooks import WebhookOutbox, parse_subscriptions

DEFAULT_TOKEN = "pat-na1-emulator-token"  # a fixture value, not a credential


class HubSpotHelpers:
    # Provided by HubSpotEmulator / the Emulator base.
    clock: Callable[[], datetime]
    portal_id: int
    store: Store
    tokens: set[str]
    expired_tokens: set[str]
    token_scopes: dict[str, frozenset[str]]
    webhooks: WebhookOutbox | None
    search_visible_at: dict[tuple[str, int], datetime]
    lost_answers: list[list[Any]]
    limits: RateLimits
    _lock: threading.RLock

    if TYPE_CHECKING:  # HubSpotEmulator's; nothing here shadows it at run time
        def _error(self, status: int, category: str, message: str, **extra: Any) -> Any:
            raise NotImplementedError

    def _write_update(
        self, record: Record, props: Mapping[str, Any], source: str, strict: bool = True
    ) -> None:
        raise NotImplementedError

    def _emit(self, object_type: ObjectType, event: str, object_id: int, now: datetime, source: str,
              prop: str | None = None, value: str | None = None) -> None:
        raise NotImplementedError

    def _write_archive(self, record: Record) -> None:
        raise NotImplementedError

    # -- webhooks --------------------------------------------------------------------------------

    def configure_webhooks(self, url: str, client_secret: str,
                           subscriptions: Sequence[str] = ("contact.creation", "contact.propertyChange"),
                           app_id: int = 1_234_567) -> None:
        with self._lock:
            self.webhooks = WebhookOutbox(url, client_secret, self.portal_id, app_id,
                                          parse_subscriptions(subscriptions, first_id=4_000_001), self.clock)

    def deliver_webhooks(self, session: requests.Session | None = None) -> int:
        """POST queued events (batches of up to 100); returns how many were acknowledged.
        Not under the emulator lock: the receiver may well call back into the emulator."""
        if self.webhooks is None:
            return 0
        return self.webhooks.deliver(session)

    @property
    def pending_webhooks(self) -> list[dict[str, Any]]:
        return list(self.webhooks.pending) if self.webhooks else []

    # -- test and demo helpers (no HTTP, no rate limits) -----------------------------------------

    def add_token(self, token: str, scopes: Iterable[str] | None = None) -> None:
        """A valid token; with `scopes`, a private app granted only those (others get 403)."""
        with self._lock:
            self.tokens.add(token)
            if scopes is not None:
                self.token_scopes[token] = frozenset(scopes)
            else:
                self.token_scopes.pop(token, None)

    def expire_token(self, token: str = DEFAULT_TOKEN) -> None:
        with self._lock:
            self.tokens.discard(token)
            self.expired_tokens.add(token)

    def add_owner(
        self, email: str, first: str, last: str, teams: Iterable[str | Mapping[str, Any]] = ()
    ) -> str:
        with self._lock:
            team_list = []
            for index, team in enumerate(teams):
                if isinstance(team, str):  # a bare name: stable id from the name, first is primary
                    team_id = str(zlib.crc32(team.encode()) % 10_000_000)
                    team_list.append({"id": team_id, "name": team, "primary": index == 0})
                else:
                    team_list.append({"primary": index == 0, **team})
            owner_id = self.store._next_owner
            self.store._next_owner += 1
            self.store.owners[owner_id] = Owner(owner_id, owner_id - 60_000_000, email, first, last,
                                                team_list, self.clock())
            return str(owner_id)

    def insert(self, object_type: str, properties: Mapping[str, Any]) -> str:
        """Create a record the way an import would: no HTTP, no validation, no rate limit."""
        with self._lock:
            kind = resolve_type(object_type)
            values = self.store.normalise(kind, properties, strict=False)
            record = self.store.create(kind, values, self.clock(), "IMPORT")
            self._emit(kind, "creation", record.id, record.created_at, "IMPORT")
            return str(record.id)

    def archive(self, object_type: str, record_id: str) -> None:
        """A user deleting the record (HubSpot archives it: readable with archived=true)."""
        with self._lock:
            self._write_archive(self.store.get(resolve_type(object_type), str(record_id)))

    def delay_search(self, object_type: str, record_id: str, seconds: float) -> None:
        """Keep the record out of search results for `seconds` from now (index lag), whatever its
        modification stamp says: a poll can move past that stamp before search shows it."""
        with self._lock:
            kind = resolve_type(object_type)
            self.search_visible_at[(kind.name, int(record_id))] = self.clock() + timedelta(seconds=seconds)

    def lose_answers(self, path_prefix: str, next_n: int = 1) -> None:
        """Fault: the next `next_n` writes (POST/PATCH/PUT) under `path_prefix` are applied, then
        answered 504 as if the gateway gave up waiting: the caller cannot tell whether they landed."""
        with self._lock:
            self.lost_answers.append([path_prefix, next_n])

    def _maybe_lose(self, request: Any, response: Any) -> Any:
        if request.method not in ("POST", "PATCH", "PUT"):
            return response
        for fault in self.lost_answers:
            if request.path.startswith(fault[0]) and fault[1] > 0:
                fault[1] -= 1
                return self._error(504, "GATEWAY_TIMEOUT", "The request timed out.")
        return response

    @property
    def daily_usage(self) -> tuple[int, int]:
        """(requests counted today, daily limit): what X-HubSpot-RateLimit-Daily(-Remaining) report."""
        with self._lock:
            return self.limits.daily_used(self.clock()), self.limits.daily

    def set_daily_usage(self, used: int, limit: int | None = None) -> None:
        """Set today's request count (and the daily limit): a portal other apps have been using."""
        with self._lock:
            if limit is not None:
                self.limits.daily = limit
            self.limits.set_daily_used(self.clock(), used)

    def insert_many(self, object_type: str, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        return [self.insert(object_type, row) for row in rows]

    def update_as_user(self, object_type: str, record_id: str, properties: Mapping[str, Any]) -> None:
        """A salesperson editing the record in the HubSpot UI (sourceType CRM_UI)."""
        with self._lock:
            record = self.store.get(resolve_type(object_type), str(record_id))
            self._write_update(record, properties, "CRM_UI", strict=False)

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        with self._lock:
            self.store.associate(resolve_type(from_type), int(from_id), resolve_type(to_type), int(to_id),
                                 None)

    def records(self, object_type: str, include_archived: bool = False) -> list[dict[str, Any]]:
        """Every record of a type as {id, properties (all set values), createdAt, ...}."""
        with self._lock:
            kind = resolve_type(object_type)
            rows = sorted(self.store.records[kind.name].values(), key=lambda r: r.id)
            return [{**self.store.render(r, None), "properties": {"hs_object_id": str(r.id), **r.values()}}
                    for r in rows if include_archived or r.archived_at is None]

    def associations_of(self, object_type: str, record_id: str, to_type: str) -> list[str]:
        with self._lock:
            kind, target = resolve_type(object_type), resolve_type(to_type)
            return [str(i) for i, _ in self.store.associated(kind.name, int(record_id), target.name)]

    def export(self) -> dict[str, Any]:
        """A snapshot for the demo report: leads/contacts with owner and status, engagements with
        the contacts they are attached to."""
        with self._lock:
            out: dict[str, Any] = {"portalId": self.portal_id,
                                   "owners": [o.to_json() for o in self.store.owners.values()]}
            for name in OBJECT_TYPES:
                rows = []
                for row in self.records(name):
                    props = row["properties"]
                    entry: dict[str, Any] = {"id": row["id"], "properties": props,
                                             "owner": props.get("hubspot_owner_id"),
                                             "createdAt": row["createdAt"], "updatedAt": row["updatedAt"]}
                    if name in ("contacts", "leads"):
                        entry["status"] = props.get("hs_lead_status") or props.get("hs_pipeline_stage")
                    if name != "contacts":
                        linked = self.associations_of(name, row["id"], "contacts")
                        entry["associations"] = {"contacts": linked}
                    rows.append(entry)
                out[name] = rows
            return out
