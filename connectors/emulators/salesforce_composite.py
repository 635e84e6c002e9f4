"""`/composite/sobjects`: up to 200 creates or updates in one call, optionally all-or-none.

Every record is validated before anything is written, so an allOrNone batch with one bad record
leaves the org untouched and reports the others as rolled back, as Salesforce does.
"""

from __future__ import annotations

from typing import Any

from connectors.emulators.salesforce_store import OrgStore, RecordError

COMPOSITE_MAX = 200
_ROLLED_BACK = ("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records were "
                "valid and the request was using AllOrNone header")

_Plan = tuple[str, str, dict[str, Any]]  # sObject, id ("" on create), validated fields


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
    return sobject, record_id, store.validate(sobject, fields, creating=creating)


def run_composite(store: OrgStore, records: list[Any], *, all_or_none: bool, creating: bool,
                  actor: str) -> list[dict[str, Any]]:
    """Per-record results `{"id", "success", "errors"}`, in request order."""
    plans: list[_Plan | RecordError] = []
    for item in records:
        try:
            plans.append(_plan(store, item, creating))
        except RecordError as exc:
            plans.append(exc)
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
