"""sObject rows over REST for the Salesforce emulator: read, create, update and delete one record
(with If-Unmodified-Since), composite sobjects (create, update, upsert by External ID) and
`/composite` subrequests. Mixed into `SalesforceEmulator`; the work itself is in
`salesforce_store` and `salesforce_composite`."""

from __future__ import annotations

import copy
import json
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.emulators.http import Request, Response
from connectors.emulators.salesforce_base import ApiError, SalesforceBase, attributed
from connectors.emulators.salesforce_composite import (
    COMPOSITE_MAX,
    UPSERT_MIN_VERSION,
    CompositeError,
    parse_composite,
    run_composite,
    run_composite_request,
    run_upsert,
)
from connectors.emulators.soql import parse_sf_datetime

RETRIEVE_MAX = 2000  # ids per sObject Collections retrieve (POST with the ids in the body)


class SalesforceRecords(SalesforceBase):
    def _record(self, request: Request) -> tuple[str, dict[str, Any]]:
        sobject = self._sobject(request.params["sobject"])
        record_id = request.params["id"]
        record = self.store.get(sobject, record_id, include_deleted=True)
        if record is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if record["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return sobject, record

    def _read(self, request: Request) -> Response:
        sobject, record = self._record(request)
        fields = request.arg("fields")
        row = dict(record)
        if fields:
            names = {n.lower(): n for n in record}
            row = {names[f.strip().lower()]: record[names[f.strip().lower()]]
                   for f in fields.split(",") if f.strip().lower() in names}
            row.setdefault("Id", record["Id"])
        return Response(200, attributed(sobject, request.params["version"], record["Id"], row))

    def _check_unmodified(self, request: Request, record: dict[str, Any]) -> None:
        header = request.headers.get("if-unmodified-since")
        if not header or "LastModifiedDate" not in record:
            return
        try:
            since = parsedate_to_datetime(header)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "INVALID_HEADER_TYPE", f"Invalid If-Unmodified-Since: {header}") from exc
        # HTTP dates have one-second resolution; a change within that second is not "after" it.
        modified = parse_sf_datetime(record["LastModifiedDate"]).replace(microsecond=0)
        if modified > since:
            raise ApiError(412, "PRECONDITION_FAILED",
                           f"The requested resource has been modified since {header}")

    def _create(self, request: Request) -> Response:
        sobject = self._sobject(request.params["sobject"])
        if sobject == "LeadHistory":
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", "entity type cannot be inserted: Lead History")
        clean = self.store.validate(sobject, self._body(request), creating=True, wire=True)
        record_id = self.store.apply_create(sobject, clean, self._actor)
        return Response(201, {"id": record_id, "success": True, "errors": []})

    def _update(self, request: Request) -> Response:
        sobject, record = self._record(request)
        self._check_unmodified(request, record)
        clean = self.store.validate(sobject, self._body(request), creating=False, record_id=record["Id"], wire=True)
        self.store.apply_update(sobject, record["Id"], clean, self._actor)
        return Response(204, None)

    def _delete(self, request: Request) -> Response:
        sobject, record = self._record(request)
        self._check_unmodified(request, record)
        self.store.apply_delete(sobject, record["Id"], self._actor)
        return Response(204, None)

    def _composite_records(self, request: Request) -> tuple[list[Any], bool]:
        body = self._body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records is required")
        if len(records) > COMPOSITE_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than "
                           f"{COMPOSITE_MAX} records into this call")
        return records, bool(body.get("allOrNone"))

    def _retrieve(self, request: Request) -> Response:
        """`POST /composite/sobjects/{sObject}` with `{"ids": [...], "fields": [...]}`: up to 2,000
        records of one type, one answer per id in request order, null for an id that is not (or no
        longer) a readable record of that type; an unknown field fails the whole call (400). The
        code for more than 2,000 ids is our approximation (Salesforce documents the limit only)."""
        sobject = self._sobject(request.params["sobject"])
        body = self._body(request)
        ids, fields = (body.get("ids"), body.get("fields")) if isinstance(body, dict) else (None, None)
        if not isinstance(ids, list) or not ids or not isinstance(fields, list) or not fields:
            raise ApiError(400, "JSON_PARSER_ERROR", "ids and fields are required")
        if len(ids) > RETRIEVE_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"cannot retrieve more than {RETRIEVE_MAX} records in one call")
        names = {n.lower(): n for n in self.store.schemas[sobject]}
        unknown = [str(f) for f in fields if str(f).lower() not in names]
        if unknown:
            raise ApiError(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity '{sobject}'")
        answers: list[dict[str, Any] | None] = []
        for record_id in ids:
            record = self.store.get(sobject, str(record_id))
            if record is None or record.get("IsDeleted"):
                answers.append(None)
                continue
            row = {names[str(f).lower()]: record.get(names[str(f).lower()]) for f in fields}
            row.setdefault("Id", record["Id"])
            answers.append(attributed(sobject, request.params["version"], record["Id"], row))
        return Response(200, answers)

    def _composite(self, request: Request, *, creating: bool) -> Response:
        records, all_or_none = self._composite_records(request)
        return Response(200, run_composite(self.store, records, all_or_none=all_or_none, creating=creating,
                                           actor=self._actor))

    def _upsert(self, request: Request) -> Response:
        major, minor = (int(part) for part in request.params["version"].split("."))
        if (major, minor) < UPSERT_MIN_VERSION:  # the resource does not exist before 46.0
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        sobject = self._sobject(request.params["sobject"])
        wanted = request.params["field"]
        field = {n.lower(): n for n in self.store.schemas[sobject]}.get(wanted.lower())
        if field is None:  # a real org's answer for an unknown (or hidden) key field
            raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: "
                           f"{wanted}")
        if not self.store.schemas[sobject][field].external_id:  # our approximation of the code
            raise ApiError(400, "INVALID_FIELD", f"Field name provided, {field} is not an External ID or indexed "
                           f"field for {sobject}")
        records, all_or_none = self._composite_records(request)
        return Response(200, run_upsert(self.store, sobject, field, records, all_or_none=all_or_none,
                                        actor=self._actor))

    def _composite_request(self, request: Request) -> Response:
        try:
            subrequests, all_or_none = parse_composite(self._body(request))
        except CompositeError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        # Rolling back means restoring the records; only worth copying when something may write.
        writes = all_or_none and any(s.method != "GET" for s in subrequests)
        saved = copy.deepcopy(self.store.tables) if writes else None

        def rollback() -> None:
            if saved is not None:
                self.store.tables = saved

        return Response(200, {"compositeResponse": run_composite_request(
            subrequests, all_or_none=all_or_none, call=self._subrequest, rollback=rollback)})

    def _subrequest(self, method: str, url: str, headers: dict[str, str], body: Any) -> Response:
        parts = urlsplit(url)
        encoded = b"" if body is None else json.dumps(body).encode()
        sub = Request(method.upper(), parts.path, parse_qs(parts.query, keep_blank_values=True),
                      {**headers, "content-type": "application/json"}, encoded)
        # Faults injected for a subrequest's own path fail that subrequest alone, as a real one can.
        fault = self.faults.draw(parts.path)
        if fault is not None and fault.kind not in ("latency", "timeout", "drop"):
            response = self.fault_response(fault.kind, sub)
            response.headers.pop("Sforce-Limit-Info", None)
            return response
        return self._dispatch(sub)
