"""Property definitions of the HubSpot emulator (HubSpot's defaults per object type, plus any the
API creates) and the checks a value must pass before the store keeps it.

HubSpot stores every value as a string; `normalise_values` turns API input into those strings and
refuses what HubSpot refuses (unknown properties, options a property does not have, task owners
that are not owners of the portal, unreadable datetimes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.emulators.hubspot_schema import ApiError, ObjectType, iso_ms
from connectors.emulators.hubspot_search import parse_datetime_ms


@dataclass
class PropertyDef:
    name: str
    label: str
    type: str  # string, number, datetime, date, enumeration, bool
    field_type: str
    group_name: str
    options: list[dict[str, Any]] = field(default_factory=list)
    has_unique_value: bool = False
    hubspot_defined: bool = True
    description: str = ""
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        stamp = iso_ms(self.created_at) if self.created_at else None
        return {
            "name": self.name, "label": self.label, "type": self.type, "fieldType": self.field_type,
            "groupName": self.group_name, "description": self.description, "options": self.options,
            "hasUniqueValue": self.has_unique_value, "hubspotDefined": self.hubspot_defined,
            "formField": False, "hidden": False, "displayOrder": -1, "calculated": False,
            "externalOptions": False, "archived": False, "createdAt": stamp, "updatedAt": stamp,
        }


def _check_options(definition: PropertyDef, text: str) -> None:
    """Enumeration values (";"-separated for multiple checkboxes) must each be an option of the
    property; HubSpot refuses others since its 2023-05 contact validation change (changelog
    "Upcoming - Increased validation for contact updates made through APIs")."""
    allowed = {str(option.get("value")) for option in definition.options}
    values = text.split(";") if definition.field_type == "checkbox" else [text]
    bad = [value for value in values if value not in allowed]
    if bad:
        raise ApiError(400, "VALIDATION_ERROR",
                       f"Property values were not valid: {bad[0]!r} was not one of the allowed options for "
                       f"{definition.name}",
                       errors=[{"message": f"{bad[0]!r} was not one of the allowed options", "code": "INVALID_OPTION",
                                "context": {"propertyName": [definition.name]}}])


def _options(*values: str) -> list[dict[str, Any]]:
    return [{"label": v.replace("_", " ").title(), "value": v, "hidden": False, "displayOrder": i}
            for i, v in enumerate(values)]


_COMMON: list[tuple[str, str, str]] = [
    ("hs_object_id", "number", "number"), ("hubspot_owner_id", "enumeration", "select"),
    ("hs_createdate", "datetime", "date"), ("hs_lastmodifieddate", "datetime", "date"),
]
_SPECIFIC: dict[str, list[tuple[str, str, str]]] = {
    "contacts": [("email", "string", "text"), ("firstname", "string", "text"),
                 ("lastname", "string", "text"), ("phone", "string", "phonenumber"),
                 ("company", "string", "text"), ("createdate", "datetime", "date"),
                 ("lastmodifieddate", "datetime", "date"), ("hs_lead_status", "enumeration", "radio"),
                 ("lifecyclestage", "enumeration", "radio"),
                 ("hubspot_owner_assigneddate", "datetime", "date"), ("num_notes", "number", "number"),
                 # The ids merged into this contact, ";"-separated (read-only, set by a merge).
                 ("hs_merged_object_ids", "enumeration", "checkbox"),
                 # Default properties every portal has that field maps commonly name.
                 ("country", "string", "text"), ("hubspotscore", "number", "number"),
                 ("hs_analytics_source", "enumeration", "select"), ("jobtitle", "string", "text")],
    "leads": [("hs_lead_name", "string", "text"), ("hs_pipeline", "enumeration", "select"),
              ("hs_pipeline_stage", "enumeration", "select"), ("hs_lead_type", "enumeration", "select"),
              ("hs_lead_label", "enumeration", "select")],
    "tasks": [("hs_timestamp", "datetime", "date"), ("hs_task_subject", "string", "text"),
              ("hs_task_body", "string", "html"), ("hs_task_status", "enumeration", "select"),
              ("hs_task_priority", "enumeration", "select"), ("hs_task_type", "enumeration", "select"),
              ("hs_task_completion_date", "datetime", "date")],  # set by HubSpot when completed
    "notes": [("hs_timestamp", "datetime", "date"), ("hs_note_body", "string", "html")],
    "calls": [("hs_timestamp", "datetime", "date"), ("hs_call_title", "string", "text"),
              ("hs_call_body", "string", "html"), ("hs_call_direction", "enumeration", "select"),
              ("hs_call_status", "enumeration", "select"), ("hs_call_duration", "number", "number")],
    "emails": [("hs_timestamp", "datetime", "date"), ("hs_email_subject", "string", "text"),
               ("hs_email_text", "string", "textarea"), ("hs_email_direction", "enumeration", "select"),
               ("hs_email_status", "enumeration", "select")],
    "meetings": [("hs_timestamp", "datetime", "date"), ("hs_meeting_title", "string", "text"),
                 ("hs_meeting_body", "string", "html"), ("hs_meeting_start_time", "datetime", "date"),
                 ("hs_meeting_end_time", "datetime", "date"),
                 ("hs_meeting_outcome", "enumeration", "select")],
}
_OPTIONS = {
    # HubSpot's default lead statuses plus the custom options the example policy maps (a portal admin
    # adds them under Settings > Properties > Lead Status).
    "hs_lead_status": _options("NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED",
                               "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING", "QUALIFIED", "COMPLIANCE_HOLD",
                               "DISQUALIFIED_COMPLIANCE"),
    "hs_task_status": _options("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"),
    "hs_task_priority": _options("LOW", "MEDIUM", "HIGH"),
}


def default_property_defs(object_type: str) -> dict[str, PropertyDef]:
    defs = {}
    for name, kind, field_type in [*_COMMON, *_SPECIFIC[object_type]]:
        group = "contactinformation" if object_type == "contacts" else f"{object_type[:-1]}information"
        defs[name] = PropertyDef(name, name.replace("_", " ").title(), kind, field_type, group,
                                 options=list(_OPTIONS.get(name, [])))
    return defs



def normalise_values(defs: Mapping[str, PropertyDef], object_type: ObjectType, props: Mapping[str, Any],
                     strict: bool, owners_active: Mapping[int, bool]) -> dict[str, str]:
    """HubSpot stores every value as a string; datetimes given as epoch millis come back ISO.
    `strict` rejects unknown properties as the API does (helpers may write anything).
    `owners_active`: the portal's owner ids, True for the active ones (task owners are checked)."""
    unknown = [name for name in props if name not in defs]
    if strict and unknown:
        reasons = ", ".join(f'Property "{n}" does not exist' for n in unknown)
        raise ApiError(
            400, "VALIDATION_ERROR", f"Property values were not valid: {reasons}",
            errors=[{"message": f'Property "{n}" does not exist', "code": "PROPERTY_DOESNT_EXIST",
                     "context": {"propertyName": [n]}} for n in unknown],
        )
    out = {}
    if strict and object_type.name == "tasks":
        _check_task_values(defs, props, owners_active)
    for name, raw in props.items():
        text = "" if raw is None else ("true" if raw is True else "false" if raw is False else str(raw))
        definition = defs.get(name)
        if strict and text and definition is not None:
            _check_enumeration(definition, text)
        if text and definition is not None and definition.type == "datetime":
            millis = parse_datetime_ms(text)
            if millis is None:
                raise ApiError(400, "VALIDATION_ERROR", f"{text} is not a valid datetime for {name}")
            text = iso_ms(datetime.fromtimestamp(millis / 1000, UTC))
        # Custom properties only: the emulator's default enumerations (owners, sources...) carry
        # no full option lists, so checking them would refuse what a real portal accepts.
        if strict and text and definition is not None and definition.type == "enumeration" \
                and not definition.hubspot_defined:
            _check_options(definition, text)
        out[name] = text
    return out


def _check_enumeration(definition: PropertyDef, text: str) -> None:
    """An enumeration with options accepts only those values (";"-joined for multiple checkboxes):
    HubSpot answers 400 VALIDATION_ERROR "Property values were not valid" with an INVALID_OPTION
    entry ("<value> was not one of the allowed options: [...]", as seen in HubSpot API error
    bodies reported in public issue trackers). Enumerations whose options live elsewhere (owners)
    list none and are not checked here."""
    if definition.type != "enumeration" or not definition.options:
        return
    allowed = [str(option["value"]) for option in definition.options]
    values = text.split(";") if definition.field_type == "checkbox" else [text]
    bad = next((value for value in values if value not in allowed), None)
    if bad is None:
        return
    message = f"{bad} was not one of the allowed options: [{', '.join(allowed)}]"
    raise ApiError(400, "VALIDATION_ERROR", f"Property values were not valid: [{message}]",
                   errors=[{"isValid": False, "message": message, "error": "INVALID_OPTION",
                            "name": definition.name, "localizedErrorMessage": message}])


def _check_task_values(defs: Mapping[str, PropertyDef], props: Mapping[str, Any],
                       owners_active: Mapping[int, bool]) -> None:
    """Tasks: an enumeration takes one of its options (hs_task_status, hs_task_priority) and
    `hubspot_owner_id` must be an owner of the portal (HubSpot assigns tasks to owners, not to
    teams or queues): refused as HubSpot refuses invalid property values, 400 VALIDATION_ERROR
    with an error per property (INVALID_OPTION, INVALID_OWNER_ID)."""
    errors: list[dict[str, Any]] = []
    for name, raw in props.items():
        text, definition = str(raw or ""), defs.get(name)
        if not text or definition is None:
            continue
        if name == "hubspot_owner_id":
            # (A portal set up without any owners, as some contract tests are, accepts any id.)
            if owners_active and (not text.isdigit() or not owners_active.get(int(text), False)):
                errors.append({"message": f"{text} is not a valid owner id", "code": "INVALID_OWNER_ID",
                               "context": {"propertyName": [name]}})
        elif definition.type == "enumeration" and definition.options and text not in {
                option["value"] for option in definition.options}:
            allowed = ", ".join(option["value"] for option in definition.options)
            errors.append({"message": f"{text} was not one of the allowed options: [{allowed}]",
                           "code": "INVALID_OPTION", "context": {"propertyName": [name]}})
    if errors:
        reasons = ", ".join(str(error["message"]) for error in errors)
        raise ApiError(400, "VALIDATION_ERROR", f"Property values were not valid: {reasons}", errors=errors)
