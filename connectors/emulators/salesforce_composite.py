"""`/composite/sobjects` (up to 200 creates or updates, optionally all-or-none) and `/composite`
(up to 25 subrequests of other REST resources, one API call, per-subrequest status and body).

`/composite/sobjects`: every record is validated before anything is written, so an allOrNone batch
with one bad record leaves the org untouched and reports the others as rolled back, as Salesforce does.

`/composite`: subrequests run in order through the emulator's own routes, so a query subrequest
answers exactly like GET /query (its `nextRecordsUrl` is then followed with ordinary queryMore
calls). The error codes for a malformed envelope (too many subrequests, duplicate referenceIds) are
our approximation; Salesforce documents the limits, not the codes. Outbound messages triggered by a
subrequest that allOrNone later rolls back are not retracted.

`PATCH /composite/sobjects/{sObject}/{ExternalIdField}` (API 46.0+): upsert up to 200 records of
that one type keyed by an External ID field. Each record is matched on its key value: no match
creates it (`created: true`), exactly one match updates that record with the fields sent
(`created: false`). Per-record results come back in request order. A key given twice in one
request fails every record carrying it (DUPLICATE_VALUE, "Duplicate external id specified"), a key
matching several records (a non-unique External ID) fails with DUPLICATE_EXTERNAL_ID. The codes for
a record of the wrong type, one carrying an Id or one without a key are our approximation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.emulators.http import Response
from connectors.emulators.salesforce_store import OrgStore, RecordError

COMPOSITE_MAX = 200
_ROLLED_BACK = ("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records were "
                "valid and the request was using AllOrNone header")

_Plan = tuple[str, str, dict[str, Any]]  # sObject, id ("" on create), validated fields
UPSERT_MIN_VERSION = (46, 0)


def _resolve_type(store: OrgStore, item: dict[str, Any]) -> str:
    attributes = item.get("attributes")
    name = attributes.get("type") if isinstance(attributes, dict) else None
    canonical = {n.lower(): n for n in store.schemas}.get(str(name).lower())
    if canonical is None or canonical == "LeadHistory":
        raise RecordError("INVALID_TYPE", f"sObject type '{name}' is not supported")
    return canonical


def _plan(store: OrgStore, item: Any, creating: bool) -> _Plan:
    if not isinstance(item, dict):
        raise RecordError("JSON_PARSER_ERROR", "each record must be an object")
    sobject = _resolve_type(store, item)
    fields = {k: v for k, v in item.items() if k.lower() != "id"}
    record_id = str(item.get("id") or item.get("Id") or "")
    if not creating:
        if not record_id:
            raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call")
        if store.get(sobject, record_id) is None:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
    elif record_id:
        raise RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
    return sobject, record_id, store.validate(sobject, fields, creating=creating, record_id=record_id or None,
                                              wire=True)


def _refuse_repeats(store: OrgStore, plans: list[_Plan | RecordError]) -> None:
    """Two records of one request with the same Unique value: the first is written, the later ones
    fail, as they would one after the other in a real org (validation alone sees neither)."""
    seen: dict[tuple[str, str, Any], str] = {}
    for index, plan in enumerate(plans):
        if isinstance(plan, RecordError):
            continue
        sobject, _record_id, clean = plan
        for name, value in clean.items():
            if value in (None, "") or not store.schemas[sobject][name].unique:
                continue
            if (sobject, name, value) in seen:
                plans[index] = RecordError("DUPLICATE_VALUE", f"duplicate value found: {name} duplicates value "
                                           f"on a record in this request ({seen[sobject, name, value]})", [])
                break
            seen[sobject, name, value] = f"record {index}"


def run_composite(store: OrgStore, records: list[Any], *, all_or_none: bool, creating: bool,
                  actor: str) -> list[dict[str, Any]]:
    """Per-record results `{"id", "success", "errors"}`, in request order."""
    plans: list[_Plan | RecordError] = []
    for item in records:
        try:
            plans.append(_plan(store, item, creating))
        except RecordError as exc:
            plans.append(exc)
    _refuse_repeats(store, plans)
    failed = any(isinstance(p, RecordError) for p in plans)
    results: list[dict[str, Any]] = []
    for plan in plans:
        if isinstance(plan, RecordError):
            results.append({"id": None, "success": False, "errors": [plan.as_dict("statusCode")]})
        elif failed and all_or_none:
            error = RecordError(*_ROLLED_BACK).as_dict("statusCode")
            results.append({"id": plan[1] or None, "success": False, "errors": [error]})
        else:
            sobject, record_id, clean = plan
            if creating:
                record_id = store.apply_create(sobject, clean, actor)
            else:
                store.apply_update(sobject, record_id, clean, actor)
            results.append({"id": record_id, "success": True, "errors": []})
    return results


def run_upsert(store: OrgStore, sobject: str, key_field: str, records: list[Any], *, all_or_none: bool,
               actor: str) -> list[dict[str, Any]]:
    """Per-record UpsertResults `{"id", "success", "errors", "created"}`, in request order.
    `key_field` is the canonical name of an External ID field of `sobject` (the caller checks)."""
    values = [item.get(key_field) if isinstance(item, dict) else None for item in records]
    # Keys are compared as sent (strings); a value given more than once fails every record with it.
    counts: dict[Any, int] = {}
    for value in values:
        if isinstance(value, str) and value:
            counts[value] = counts.get(value, 0) + 1
    plans: list[_Plan | RecordError] = []
    for item, value in zip(records, values, strict=True):
        try:
            plans.append(_plan_upsert(store, sobject, key_field, item, value, counts))
        except RecordError as exc:
            plans.append(exc)
    failed = any(isinstance(p, RecordError) for p in plans)
    results: list[dict[str, Any]] = []
    for plan in plans:
        if isinstance(plan, RecordError):
            results.append({"id": None, "success": False, "errors": [plan.as_dict("statusCode")],
                            "created": False})
        elif failed and all_or_none:
            error = RecordError(*_ROLLED_BACK).as_dict("statusCode")
            results.append({"id": plan[1] or None, "success": False, "errors": [error], "created": False})
        else:
            _sobject, record_id, clean = plan
            created = not record_id
            if created:
                record_id = store.apply_create(sobject, clean, actor)
            else:
                store.apply_update(sobject, record_id, clean, actor)
            results.append({"id": record_id, "success": True, "errors": [], "created": created})
    return results


def _plan_upsert(store: OrgStore, sobject: str, key_field: str, item: Any, value: Any,
                 counts: dict[Any, int]) -> _Plan:
    if not isinstance(item, dict):
        raise RecordError("JSON_PARSER_ERROR", "each record must be an object")
    if _resolve_type(store, item) != sobject:
        raise RecordError("INVALID_TYPE", f"this request upserts {sobject} records only")
    if any(k.lower() == "id" for k in item):
        raise RecordError("INVALID_FIELD", "cannot specify Id in an upsert by external id", ["Id"])
    if value in (None, ""):
        raise RecordError("MISSING_ARGUMENT", f"{key_field} not specified", [key_field])
    if counts.get(value, 0) > 1:
        raise RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {value}", [key_field])
    matches = store.matching(sobject, key_field, value)
    if len(matches) > 1:
        raise RecordError("DUPLICATE_EXTERNAL_ID", f"{key_field}: more than one record found for external id "
                          f"field: {matches}", [key_field])
    fields = {k: v for k, v in item.items() if k != "attributes"}
    if matches:
        return sobject, matches[0], store.validate(sobject, fields, creating=False, record_id=matches[0], wire=True)
    return sobject, "", store.validate(sobject, fields, creating=True, wire=True)


# --- /composite: up to 25 subrequests of other REST resources in one call -----------------------------

COMPOSITE_REQUEST_MAX = 25
COMPOSITE_QUERY_MAX = 5  # query/queryAll subrequests (and sObject Collections) per composite call
_QUERY_RESOURCE = re.compile(r"^/services/data/v\d+\.\d+/(query|queryAll)/?$")
_SUPPORTED = re.compile(r"^/services/data/v\d+\.\d+/(sobjects|query|queryAll)(/|$)")
_REFERENCE = re.compile(r"@\{(\w+)((?:\.\w+|\[\d+\])*)\}")
_HALTED = [{"errorCode": "PROCESSING_HALTED",
            "message": "The transaction was rolled back since another operation in the same transaction failed."}]
_FORBIDDEN_HEADERS = frozenset({"accept", "authorization", "content-type"})

Subcall = Callable[[str, str, dict[str, str], Any], Response]  # method, url, headers, body -> response


class CompositeError(Exception):
    """The composite envelope itself is malformed: the whole call fails with 400, nothing runs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Subrequest:
    method: str
    url: str
    reference_id: str
    headers: dict[str, str]
    body: Any


def parse_composite(body: Any) -> tuple[list[Subrequest], bool]:
    """Subrequests and allOrNone; CompositeError when the envelope breaks the documented rules."""
    items = body.get("compositeRequest") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise CompositeError("JSON_PARSER_ERROR", "compositeRequest is required and must not be empty")
    if len(items) > COMPOSITE_REQUEST_MAX:
        raise CompositeError("LIMIT_EXCEEDED", f"Composite requests may hold at most {COMPOSITE_REQUEST_MAX} "
                             f"subrequests, got {len(items)}")
    parsed: list[Subrequest] = []
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in
                                                 ("method", "url", "referenceId")):
            raise CompositeError("JSON_PARSER_ERROR", "each subrequest needs method, url and referenceId")
        headers = {str(k).lower(): str(v) for k, v in dict(item.get("httpHeaders") or {}).items()}
        if _FORBIDDEN_HEADERS & set(headers):  # inherited from the top-level request, never overridden
            raise CompositeError("INVALID_INPUT", "subrequests may not set Accept, Authorization or Content-Type")
        parsed.append(Subrequest(item["method"], item["url"], item["referenceId"], headers, item.get("body")))
    if len({s.reference_id for s in parsed}) != len(parsed):
        raise CompositeError("DUPLICATE_REFERENCE_ID", "referenceId values must be unique")
    queries = sum(1 for s in parsed if _QUERY_RESOURCE.match(s.url.split("?", 1)[0]))
    if queries > COMPOSITE_QUERY_MAX:
        raise CompositeError("LIMIT_EXCEEDED", f"at most {COMPOSITE_QUERY_MAX} query operations per "
                             "composite request")
    return parsed, bool(body.get("allOrNone"))


def _lookup(value: Any, path: str) -> Any:
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        value = value[int(index)] if index else value[name]
    return value


def _resolve(value: Any, results: dict[str, Any]) -> Any:
    """Substitute `@{referenceId.field[0].x}` with values from earlier subrequests' bodies."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda m: str(_lookup(results[m.group(1)], m.group(2))), value)
    if isinstance(value, dict):
        return {k: _resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results) for v in value]
    return value


def _result(response: Response, reference_id: str) -> dict[str, Any]:
    return {"body": response.body, "httpHeaders": dict(response.headers),
            "httpStatusCode": response.status, "referenceId": reference_id}


def run_composite_request(subrequests: list[Subrequest], *, all_or_none: bool, call: Subcall,
                          rollback: Callable[[], None]) -> list[dict[str, Any]]:
    """Run the subrequests in order (as with collateSubrequests=false). A failure halts the rest and
    rolls back when allOrNone; otherwise only subrequests that reference a failed one are skipped."""
    bodies: dict[str, Any] = {}
    failed: set[str] = set()
    results: list[dict[str, Any]] = []
    for sub in subrequests:
        referenced = {m.group(1) for m in _REFERENCE.finditer(f"{sub.url} {sub.body!r}")}
        if (all_or_none and failed) or referenced & failed:
            results.append(_result(Response(400, _HALTED), sub.reference_id))
            failed.add(sub.reference_id)
            continue
        if not _SUPPORTED.match(sub.url.split("?", 1)[0]):
            response = Response(400, [{"errorCode": "INVALID_API_INPUT",
                                       "message": f"Composite does not support the resource {sub.url}"}])
        else:
            try:
                url, body = _resolve(sub.url, bodies), _resolve(sub.body, bodies)
            except (KeyError, IndexError, TypeError):
                response = Response(400, [{"errorCode": "INVALID_REFERENCE",
                                           "message": f"Invalid reference specified in {sub.reference_id}"}])
            else:
                response = call(sub.method, url, sub.headers, body)
        results.append(_result(response, sub.reference_id))
        if response.status >= 400:
            failed.add(sub.reference_id)
        else:
            bodies[sub.reference_id] = response.body
    if all_or_none and failed:
        rollback()
        results = [r if r["httpStatusCode"] >= 400 else {**r, "body": _HALTED, "httpStatusCode": 400}
                   for r in results]
    return results
