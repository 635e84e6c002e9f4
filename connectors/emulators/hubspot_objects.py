"""CRM objects over REST for the HubSpot emulator: list, create, read, update and archive one
record, search, and the batch endpoints, with the webhook events their writes announce. Mixed
into `HubSpotEmulator`; filter semantics live in `hubspot_search`, data in `hubspot_store`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.emulators.http import Request, Response
from connectors.emulators.hubspot_base import HubSpotBase
from connectors.emulators.hubspot_schema import (
    ASSOCIATION_TYPES,
    OBJECT_TYPES,
    ApiError,
    ObjectType,
    iso_ms,
    resolve_type,
)
from connectors.emulators.hubspot_search import (
    matches,
    matches_query,
    scrambled_id,
    sort_records,
    validate_search,
)
from connectors.emulators.hubspot_store import Record

BATCH_MAX = 100
# A batch read asking for `propertiesWithHistory` takes at most 50 inputs. HubSpot's answer, as
# quoted in PipedreamHQ/pipedream#8462 and activepieces/activepieces#9359 (both hit it in
# production): 400 {"status": "error", "category": "VALIDATION_ERROR", "message": "The maximum
# number of inputs supported in a batch request for property histories is 50. Please reduce the
# number of items and try again", "correlationId": ...}.
HISTORY_BATCH_MAX = 50
HISTORY_BATCH_MESSAGE = ("The maximum number of inputs supported in a batch request for property histories is "
                         f"{HISTORY_BATCH_MAX}. Please reduce the number of items and try again")
LIST_MAX = 100
# sourceType recorded in property history -> changeSource announced in webhooks
_CHANGE_SOURCE = {"INTEGRATION": "INTEGRATION", "CRM_UI": "CRM_UI", "IMPORT": "IMPORT"}


class HubSpotObjects(HubSpotBase):
    _random: random.Random  # HubSpotEmulator's seeded generator

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
                records = self.store.records[target.name]
                # An archived (deleted) target is refused here as `store.associate` would, before
                # anything of the batch is written.
                if not to_id.isdigit() or int(to_id) not in records or records[int(to_id)].archived_at:
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
        if self.search_lag_s > 0:
            self.search_visible_at[(object_type.name, record.id)] = now + timedelta(seconds=self.search_lag_s)
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
        payload = request.json() or {}
        record = self._write_create(object_type, payload, "INTEGRATION")
        return Response(201, self._render_created(record, payload))

    def _render_created(self, record: Record, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A create answers "a copy of the object, including the ID": the properties it was given
        (plus the system stamps), whatever they are; not the object type's default set."""
        return self.store.render(record, list(payload.get("properties") or {}) or None)

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
        op = request.params["op"]
        if op == "read" and body.get("propertiesWithHistory") and len(inputs) > HISTORY_BATCH_MAX:
            raise ApiError(400, "VALIDATION_ERROR", HISTORY_BATCH_MESSAGE)
        started = iso_ms(self.clock())
        results: list[Record] = []
        missing: list[str] = []
        if op == "create":
            for item in inputs:  # validate all first: one bad input fails the whole batch
                self.store.normalise(object_type, item.get("properties") or {}, strict=True)
                self._resolve_associations(object_type, item.get("associations"))
            results = [self._write_create(object_type, item, "INTEGRATION") for item in inputs]
        else:
            id_property = body.get("idProperty")
            self.store.check_id_property(object_type, id_property)  # the whole batch is refused
            if op == "update":  # validated first as well: one invalid input fails the whole batch
                ids = [str(item.get("id")) for item in inputs]
                if len(set(ids)) < len(ids):
                    raise ApiError(400, "VALIDATION_ERROR", "Duplicate IDs found in batch input: "
                                   f"{sorted({i for i in ids if ids.count(i) > 1})}")
                for item in inputs:
                    self.store.normalise(object_type, item.get("properties") or {}, strict=True)
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
                if all(r.id != record.id for r in results):  # a merged-away id and its survivor: once
                    results.append(record)
        if op == "archive":
            return Response(204, None)
        if op == "create":
            rendered = [self._render_created(r, item) for r, item in zip(results, inputs, strict=True)]
            # HubSpot promises no order for batch results (HubSpot/hubspot-api-nodejs#190): clients
            # must match them by a property, so they come back shuffled here.
            self._random.shuffle(rendered)
        else:
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
