"""Loopback emulator of the HubSpot CRM v3 API, good enough for the unmodified hubspot-api-client.

Covers what the sidecar uses: objects (contacts, leads, tasks, notes, calls, emails, meetings)
with CRUD, search, batch and property history; v3/v4 associations; owners; properties; the
account rate limits; and signed webhooks v3 delivery. Response bodies carry every field the
client's generated models require, since a missing one fails deserialisation client-side.

The pieces live in siblings: `hubspot_store` (data), `hubspot_search` (filter semantics),
`hubspot_limits` (rate limits), `hubspot_webhooks` (delivery and signatures) and
`hubspot_helpers` (seeding/inspection helpers for tests and the demo).
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from connectors.emulators.http import Emulator, Request, Response
from connectors.emulators.hubspot_helpers import DEFAULT_TOKEN, HubSpotHelpers
from connectors.emulators.hubspot_limits import Denial, RateLimits
from connectors.emulators.hubspot_search import (
    MAX_SEARCH_RESULTS,
    SearchError,
    matches,
    matches_query,
    scrambled_id,
    sort_records,
    validate_search,
)
from connectors.emulators.hubspot_store import (
    ASSOCIATION_TYPES,
    OBJECT_TYPES,
    ApiError,
    ObjectType,
    PropertyDef,
    Record,
    Store,
    iso_ms,
    resolve_type,
)
from connectors.emulators.hubspot_webhooks import WebhookOutbox, sign_v3

__all__ = ["DEFAULT_TOKEN", "HubSpotEmulator", "sign_v3"]

BATCH_MAX = 100
LIST_MAX = 100
OWNERS_MAX = 500


class HubSpotEmulator(HubSpotHelpers, Emulator):
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
        self.store = Store()
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
            except ApiError as exc:
                response = self._error(exc.status, exc.category, exc.message, **exc.extra)
            except SearchError as exc:
                response = self._error(400, "VALIDATION_ERROR", str(exc))
            if response.status in (404, 405) and isinstance(response.body, dict) and "error" in response.body:
                message = f"No route for {request.method} {request.path}"
                response = self._error(404, "OBJECT_NOT_FOUND", message)
            response.headers.update(self.limits.headers(now))
            return response

    # -- request helpers -------------------------------------------------------------------------

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

    # -- writes shared by single and batch endpoints ---------------------------------------------

    def _resolve_associations(self, object_type: ObjectType, specs: Any) -> list[tuple[ObjectType, int, int]]:
        """Validate `associations` of a create before anything is written, so a bad target does
        not leave a half-created record behind."""
        resolved = []
        for spec in specs or []:
            to_id = str((spec.get("to") or {}).get("id", ""))
            for kind in spec.get("types") or []:
                type_id = int(kind.get("associationTypeId", -1))
                target = next((OBJECT_TYPES[to] for (frm, to), tid in ASSOCIATION_TYPES.items()
                               if frm == object_type.name and tid == type_id), None)
                if target is None:
                    raise ApiError(400, "VALIDATION_ERROR",
                                   f"{type_id} is not a valid association type for {object_type.name}")
                if not to_id.isdigit() or int(to_id) not in self.store.records[target.name]:
                    raise ApiError(400, "VALIDATION_ERROR", f"No {target.singular} with ID {to_id} exists")
                resolved.append((target, int(to_id), type_id))
        return resolved

    def _write_create(self, object_type: ObjectType, payload: Mapping[str, Any], source: str) -> Record:
        values = self.store.normalise(object_type, payload.get("properties") or {}, strict=True)
        links = self._resolve_associations(object_type, payload.get("associations"))
        now = self.clock()
        record = self.store.create(object_type, values, now, source)
        for target, to_id, type_id in links:
            self.store.associate(object_type, record.id, target, to_id, type_id)
        self._emit(object_type, "creation", record.id, now, _CHANGE_SOURCE[source])
        return record

    def _write_update(
        self, record: Record, props: Mapping[str, Any], source: str, strict: bool = True
    ) -> None:
        values = self.store.normalise(record.object_type, props, strict=strict)
        now = self.clock()
        for name in self.store.update(record, values, now, source):
            self._emit(record.object_type, "propertyChange", record.id, now, _CHANGE_SOURCE[source],
                       name, record.value(name))

    def _write_archive(self, record: Record) -> None:
        now = self.clock()
        record.archived_at = now
        record.updated_at = now
        self._emit(record.object_type, "deletion", record.id, now, "INTEGRATION")

    def _emit(self, object_type: ObjectType, event: str, object_id: int, now: datetime, source: str,
              prop: str | None = None, value: str | None = None) -> None:
        if self.webhooks is not None:
            self.webhooks.enqueue(object_type.singular, event, object_id, occurred_at=now,
                                  change_source=source, property_name=prop, property_value=value)

    # -- objects ---------------------------------------------------------------------------------

    def _list(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        limit = self._int_arg(request, "limit", 10, LIST_MAX)
        after = int(request.arg("after") or 0)
        archived = self._flag(request, "archived")
        rows = sorted((r for r in self.store.records[object_type.name].values()
                       if (r.archived_at is not None) == archived and r.id >= after), key=lambda r: r.id)
        body: dict[str, Any] = {"results": [self._render_for(request, r) for r in rows[:limit]]}
        if len(rows) > limit:
            body["paging"] = self._next_link(request.path, str(rows[limit].id))
        return Response(200, body)

    def _create(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        record = self._write_create(object_type, request.json() or {}, "INTEGRATION")
        return Response(201, self.store.render(record, None))

    def _read(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        record = self.store.get(object_type, request.params["id"], self._flag(request, "archived"),
                                request.arg("idProperty"))
        return Response(200, self._render_for(request, record))

    def _update(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        record = self.store.get(object_type, request.params["id"], id_property=request.arg("idProperty"))
        self._write_update(record, (request.json() or {}).get("properties") or {}, "INTEGRATION")
        return Response(200, self.store.render(record, None))

    def _archive(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        # HubSpot answers 204 for an unknown or already archived id too.
        with contextlib.suppress(ApiError):
            self._write_archive(self.store.get(object_type, request.params["id"]))
        return Response(204, None)

    def _search(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        search = validate_search(request.json(), self.search_result_cap)
        defs = self.store.property_defs[object_type.name]

        def type_of(name: str) -> str:
            definition = defs.get(name)
            return definition.type if definition else "string"

        now = self.clock()
        rows: list[tuple[int, Mapping[str, str]]] = [
            (r.id, r.values()) for r in self.store.live(object_type)
            if self.search_visible_at.get((object_type.name, r.id), now) <= now]
        hits = [row for row in rows
                if matches(row[1], search.filter_groups, type_of) and matches_query(row[1], search.query)]
        ordered = sort_records(hits, search.sorts, type_of, int if self.ties_by_id else scrambled_id)
        # Never serve past the 10,000th result, even when after + limit straddles it.
        end = min(search.offset + search.limit, self.search_result_cap)
        page = ordered[search.offset:end]
        table = self.store.records[object_type.name]
        body: dict[str, Any] = {
            "total": len(ordered),
            "results": [self.store.render(table[record_id], search.properties) for record_id, _ in page],
        }
        if end < len(ordered):
            # HubSpot still offers a cursor at 10,000; following it is what gets the 400.
            body["paging"] = {"next": {"after": str(end)}}
        return Response(200, body)

    def _batch(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        body = request.json() or {}
        inputs = body.get("inputs") or []
        if len(inputs) > BATCH_MAX:
            raise ApiError(400, "VALIDATION_ERROR", f"Too many inputs. Maximum allowed is {BATCH_MAX}",
                           context={"max": [str(BATCH_MAX)], "received": [str(len(inputs))]})
        started = iso_ms(self.clock())
        op = request.params["op"]
        results: list[Record] = []
        missing: list[str] = []
        if op == "create":
            for item in inputs:  # validate all first: one bad input fails the whole batch
                self.store.normalise(object_type, item.get("properties") or {}, strict=True)
                self._resolve_associations(object_type, item.get("associations"))
            results = [self._write_create(object_type, item, "INTEGRATION") for item in inputs]
        else:
            id_property = body.get("idProperty")
            # batch/read?archived=true answers archived records only (deleted, merged away).
            archived = op == "read" and self._flag(request, "archived")
            for item in inputs:
                try:
                    record = self.store.get(object_type, str(item.get("id")), archived, id_property=id_property)
                except ApiError:
                    missing.append(str(item.get("id")))
                    continue
                if op == "update":
                    self._write_update(record, item.get("properties") or {}, "INTEGRATION")
                elif op == "archive":
                    self._write_archive(record)
                results.append(record)
        if op == "archive":
            return Response(204, None)
        rendered = [self.store.render(r, body.get("properties"), body.get("propertiesWithHistory") or ())
                    for r in results]
        payload: dict[str, Any] = {"status": "COMPLETE", "results": rendered, "startedAt": started,
                                   "completedAt": iso_ms(self.clock()), "requestedAt": started}
        if missing:
            payload["numErrors"] = 1
            payload["errors"] = [{
                "status": "error", "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {object_type.singular.upper()} objects, they may be deleted "
                           "or not exist. Check that ids are valid.",
                "context": {"ids": missing}, "links": {}, "errors": [],
            }]
            return Response(207, payload)
        return Response(201 if op == "create" else 200, payload)

    # -- associations v4 -------------------------------------------------------------------------

    def _v4_list(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        target = resolve_type(request.params["to"])
        record = self.store.get(object_type, request.params["id"])
        results = [{"toObjectId": to_id,
                    "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]}
                   for to_id, type_id in self.store.associated(object_type.name, record.id, target.name)]
        return Response(200, {"results": results})

    def _v4_create(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        target = resolve_type(request.params["to"])
        record = self.store.get(object_type, request.params["id"])
        for spec in request.json() or []:
            self.store.associate(object_type, record.id, target, int(request.params["to_id"]),
                                 int(spec.get("associationTypeId", -1)))
        return Response(201, {"fromObjectTypeId": object_type.type_id, "fromObjectId": record.id,
                              "toObjectTypeId": target.type_id, "toObjectId": int(request.params["to_id"]),
                              "labels": []})

    # -- owners and properties -------------------------------------------------------------------

    def _owners(self, request: Request) -> Response:
        limit = self._int_arg(request, "limit", 100, OWNERS_MAX)
        after = int(request.arg("after") or 0)
        email = (request.arg("email") or "").lower()
        owners = sorted((o for o in self.store.owners.values()
                         if o.archived == self._flag(request, "archived") and o.id >= after
                         and (not email or o.email.lower() == email)), key=lambda o: o.id)
        body: dict[str, Any] = {"results": [o.to_json() for o in owners[:limit]]}
        if len(owners) > limit:
            body["paging"] = self._next_link(request.path, str(owners[limit].id))
        return Response(200, body)

    def _owner(self, request: Request) -> Response:
        raw = request.params["id"]
        by_user = request.arg("idProperty") == "userId"
        owner = next((o for o in self.store.owners.values()
                      if str(o.user_id if by_user else o.id) == raw), None)
        if owner is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Owner {raw} not found")
        return Response(200, owner.to_json())

    def _properties(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        defs = self.store.property_defs[object_type.name].values()
        return Response(200, {"results": [d.to_json() for d in defs]})

    def _property(self, request: Request) -> Response:
        defs = self.store.property_defs[resolve_type(request.params["type"]).name]
        definition = defs.get(request.params["name"])
        if definition is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Property {request.params['name']} does not exist")
        return Response(200, definition.to_json())

    def _create_property(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        body = request.json() or {}
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise ApiError(400, "VALIDATION_ERROR", f"Missing required fields: {', '.join(missing)}")
        defs = self.store.property_defs[object_type.name]
        if body["name"] in defs:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{body['name']}' already exists.",
                           subCategory="PropertyValidationError.PROPERTY_ALREADY_EXISTS")
        definition = PropertyDef(
            body["name"], body["label"], body["type"], body["fieldType"], body["groupName"],
            options=[{"hidden": False, "displayOrder": i, **option}
                     for i, option in enumerate(body.get("options") or [])],
            has_unique_value=bool(body.get("hasUniqueValue")), hubspot_defined=False,
            description=body.get("description") or "", created_at=self.clock(),
        )
        defs[definition.name] = definition
        return Response(201, definition.to_json())

_OBJECT_PATH = re.compile(r"/crm/v[34]/(?P<kind>objects|properties)/(?P<type>[^/]+)")


def required_scope(method: str, path: str) -> str | None:
    """The granular scope a private app needs for a request, as HubSpot names it. Engagements
    (tasks, notes, calls...) are covered by the contacts scopes; property definitions by
    crm.schemas.<object>.read/write."""
    if path.startswith("/crm/v3/owners"):
        return "crm.objects.owners.read"
    match = _OBJECT_PATH.match(path)
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


_KNOWN_TYPES = {alias for t in OBJECT_TYPES.values() for alias in (t.name, t.type_id, t.singular)}
# sourceType recorded in property history -> changeSource announced in webhooks
_CHANGE_SOURCE = {"INTEGRATION": "INTEGRATION", "CRM_UI": "CRM_UI", "IMPORT": "IMPORT"}
