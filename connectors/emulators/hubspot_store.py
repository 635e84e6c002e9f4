"""In-memory CRM data of the HubSpot emulator: object types, property definitions, records with
per-property value history, associations and owners.

No HTTP here; `hubspot.py` maps requests onto this store and `ApiError`s onto HubSpot's error
bodies. Callers hold the emulator's lock, so the store itself is not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.emulators.hubspot_search import parse_datetime_ms


class ApiError(Exception):
    """An error HubSpot answers with a JSON body {status, message, correlationId, category}."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra


def iso_ms(moment: datetime) -> str:
    """HubSpot's timestamp format: UTC, millisecond precision, trailing Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class ObjectType:
    name: str  # plural API name
    type_id: str  # "0-1" etc.
    singular: str
    created_prop: str
    modified_prop: str
    default_props: tuple[str, ...]


def _engagement(name: str, type_id: str, singular: str, *extra: str) -> ObjectType:
    return ObjectType(name, type_id, singular, "hs_createdate", "hs_lastmodifieddate",
                      ("hs_createdate", "hs_lastmodifieddate", "hs_object_id", *extra))


OBJECT_TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType("contacts", "0-1", "contact", "createdate", "lastmodifieddate",
                   ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")),
        _engagement("leads", "0-136", "lead", "hs_lead_name"),
        _engagement("tasks", "0-27", "task"),
        _engagement("notes", "0-46", "note"),
        _engagement("calls", "0-48", "call"),
        _engagement("emails", "0-49", "email"),
        _engagement("meetings", "0-47", "meeting"),
    )
}
_ALIASES = {alias: t.name for t in OBJECT_TYPES.values() for alias in (t.name, t.type_id, t.singular)}


def resolve_type(raw: str) -> ObjectType:
    name = _ALIASES.get(raw.lower())
    if name is None:
        raise ApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {raw}")
    return OBJECT_TYPES[name]


# HUBSPOT_DEFINED association type ids, keyed by (from, to); the reverse direction has its own id.
# Engagement ids are HubSpot's documented ones; the lead/contact pair (578/579) is our best
# reading of the leads docs and should be confirmed against a real portal.
ASSOCIATION_TYPES: dict[tuple[str, str], int] = {}
_PAIRS = [("tasks", 204, 203), ("notes", 202, 201), ("calls", 194, 193), ("emails", 198, 197),
          ("meetings", 200, 199), ("leads", 578, 579)]
for _name, _to_contact, _from_contact in _PAIRS:
    ASSOCIATION_TYPES[(_name, "contacts")] = _to_contact
    ASSOCIATION_TYPES[("contacts", _name)] = _from_contact


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


@dataclass(frozen=True)
class Version:
    value: str
    timestamp: datetime
    source_type: str


@dataclass
class Record:
    object_type: ObjectType
    id: int
    created_at: datetime
    updated_at: datetime
    history: dict[str, list[Version]] = field(default_factory=dict)  # newest first, as HubSpot
    archived_at: datetime | None = None
    merged_into: int | None = None  # merged away: reads by this id answer the surviving record

    def value(self, name: str) -> str | None:
        versions = self.history.get(name)
        return versions[0].value if versions else None

    # Current non-empty values, rebuilt lazily: every search reads them for every record.
    _values: dict[str, str] | None = field(default=None, repr=False)

    def values(self) -> dict[str, str]:
        if self._values is None:
            self._values = {name: versions[0].value for name, versions in self.history.items()
                            if versions[0].value}
        return self._values

    def touch(self) -> None:
        self._values = None


@dataclass
class Owner:
    id: int
    user_id: int
    email: str
    first_name: str
    last_name: str
    teams: list[dict[str, Any]]
    created_at: datetime
    archived: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "email": self.email, "type": "PERSON", "firstName": self.first_name,
            "lastName": self.last_name, "userId": self.user_id, "userIdIncludingInactive": self.user_id,
            "createdAt": iso_ms(self.created_at), "updatedAt": iso_ms(self.created_at),
            "archived": self.archived, "teams": self.teams,
        }


class Store:
    def __init__(self) -> None:
        self.records: dict[str, dict[int, Record]] = {name: {} for name in OBJECT_TYPES}
        self.property_defs = {name: default_property_defs(name) for name in OBJECT_TYPES}
        self.owners: dict[int, Owner] = {}
        # (from type, from id) -> list of (to type, to id, association type id)
        self.edges: dict[tuple[str, int], list[tuple[str, int, int]]] = {}
        self._next_id = 1001
        self.portal_id = 0  # set by the emulator; named in some error messages
        self._next_owner = 70_000_001

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    # -- records ---------------------------------------------------------------------------------

    def normalise(self, object_type: ObjectType, props: Mapping[str, Any], strict: bool) -> dict[str, str]:
        """HubSpot stores every value as a string; datetimes given as epoch millis come back ISO.
        `strict` rejects unknown properties as the API does (helpers may write anything)."""
        defs = self.property_defs[object_type.name]
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
            self._check_task_values(defs, props)
        for name, raw in props.items():
            text = "" if raw is None else ("true" if raw is True else "false" if raw is False else str(raw))
            definition = defs.get(name)
            if strict and text and definition is not None:
                self._check_options(definition, text)
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

    @staticmethod
    def _check_options(definition: PropertyDef, text: str) -> None:
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

    def _check_task_values(self, defs: Mapping[str, PropertyDef], props: Mapping[str, Any]) -> None:
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
                if self.owners and (not text.isdigit() or int(text) not in self.owners
                                    or self.owners[int(text)].archived):
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

    def check_unique(self, object_type: ObjectType, values: Mapping[str, str], own_id: int | None) -> None:
        defs = self.property_defs[object_type.name]
        for name, value in values.items():
            definition = defs.get(name)
            if not value or definition is None or not definition.has_unique_value:
                continue
            for record in self.records[object_type.name].values():
                if record.id != own_id and record.archived_at is None and record.value(name) == value:
                    raise ApiError(
                        409, "CONFLICT",
                        f"A {object_type.singular} with the value {value!r} for unique property "
                        f"{name!r} already exists (id {record.id})",
                    )

    def create(
        self, object_type: ObjectType, values: Mapping[str, str], now: datetime, source: str
    ) -> Record:
        self.check_unique(object_type, values, None)
        record = Record(object_type, self.new_id(), now, now)
        stamp = iso_ms(now)
        system = {"hs_object_id": str(record.id), object_type.created_prop: stamp,
                  object_type.modified_prop: stamp}
        for name, value in system.items():
            record.history[name] = [Version(value, now, "CALCULATED")]
        for name, value in values.items():
            if name not in system and value != "":
                record.history[name] = [Version(value, now, source)]
        record.touch()
        self.records[object_type.name][record.id] = record
        return record

    def update(self, record: Record, values: Mapping[str, str], now: datetime, source: str) -> list[str]:
        """Apply values; returns the names whose value actually changed (these are what HubSpot
        records in history and announces to propertyChange webhooks)."""
        self.check_unique(record.object_type, values, record.id)
        changed = []
        for name, value in values.items():
            if name in ("hs_object_id", record.object_type.created_prop):
                continue  # read-only in HubSpot
            if (record.value(name) or "") == value:
                continue
            record.history.setdefault(name, []).insert(0, Version(value, now, source))
            changed.append(name)
        if record.object_type.name == "tasks" and "hs_task_status" in changed:
            # HubSpot stamps the completion time itself (and clears it when a task is reopened).
            done = record.value("hs_task_status") == "COMPLETED"
            record.history.setdefault("hs_task_completion_date", []).insert(
                0, Version(iso_ms(now) if done else "", now, "CALCULATED"))
        if values:
            # Any write bumps the modification stamp, even a no-op one, as HubSpot does.
            modified = record.object_type.modified_prop
            record.history.setdefault(modified, []).insert(0, Version(iso_ms(now), now, "CALCULATED"))
            record.updated_at = now
        record.touch()
        return changed

    def check_id_property(self, object_type: ObjectType, id_property: str | None) -> None:
        """`idProperty` must name a unique property (or email on contacts). HubSpot's refusal for
        a non-unique one, as quoted for update/upsert (HubSpot/hubspot-api-nodejs#548,
        segmentio/action-destinations#3957): 400 VALIDATION_ERROR "Unable to perform update/upsert
        by non-unique 0-1 property X in portal ID N"; reads are modelled with the same words."""
        if not id_property or id_property == "hs_object_id":
            return
        if object_type.name == "contacts" and id_property == "email":
            return
        definition = self.property_defs[object_type.name].get(id_property)
        if definition is None or not definition.has_unique_value:
            raise ApiError(400, "VALIDATION_ERROR", f"Unable to perform read by non-unique {object_type.type_id} "
                                                    f"property {id_property} in portal ID {self.portal_id}")

    def get(self, object_type: ObjectType, raw_id: str, archived: bool = False,
            id_property: str | None = None) -> Record:
        self.check_id_property(object_type, id_property)
        table = self.records[object_type.name]
        record: Record | None = None
        if id_property and id_property != "hs_object_id":
            record = next((r for r in table.values() if r.value(id_property) == raw_id), None)
        elif raw_id.isdigit():
            record = table.get(int(raw_id))
        while record is not None and record.merged_into is not None:
            # A merged-away id reads as the surviving record, under the survivor's id (it is no
            # archived record of its own either).
            record = None if archived else table.get(record.merged_into)
        if record is None or (record.archived_at is not None) != archived:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        return record

    def live(self, object_type: ObjectType) -> list[Record]:
        return [r for r in self.records[object_type.name].values() if r.archived_at is None]

    # -- associations ----------------------------------------------------------------------------

    def associate(self, from_type: ObjectType, from_id: int, to_type: ObjectType, to_id: int,
                  type_id: int | None) -> None:
        expected = ASSOCIATION_TYPES.get((from_type.name, to_type.name))
        if expected is None or (type_id is not None and type_id != expected):
            message = f"{type_id} is not a valid association type between {from_type.name} and {to_type.name}"
            raise ApiError(400, "VALIDATION_ERROR", message)
        if to_id not in self.records[to_type.name] or self.records[to_type.name][to_id].archived_at:
            raise ApiError(400, "VALIDATION_ERROR", f"No {to_type.singular} with ID {to_id} exists")
        inverse = ASSOCIATION_TYPES[(to_type.name, from_type.name)]
        forward = self.edges.setdefault((from_type.name, from_id), [])
        if (to_type.name, to_id, expected) not in forward:
            forward.append((to_type.name, to_id, expected))
            self.edges.setdefault((to_type.name, to_id), []).append((from_type.name, from_id, inverse))

    def associated(self, from_type: str, from_id: int, to_type: str) -> list[tuple[int, int]]:
        return [(to_id, type_id) for kind, to_id, type_id in self.edges.get((from_type, from_id), [])
                if kind == to_type and self.records[kind][to_id].archived_at is None]

    # -- rendering -------------------------------------------------------------------------------

    def render(self, record: Record, properties: Sequence[str] | None,
               with_history: Sequence[str] = (), associations: Iterable[ObjectType] = ()) -> dict[str, Any]:
        object_type = record.object_type
        names = list(properties) if properties else list(object_type.default_props)
        # System stamps come back whatever was asked for; asked-for but unset properties are null.
        for always in ("hs_object_id", object_type.created_prop, object_type.modified_prop):
            if always not in names:
                names.append(always)
        body: dict[str, Any] = {
            "id": str(record.id),
            "properties": {name: record.value(name) or None for name in names
                           if name in record.history or name in self.property_defs[object_type.name]},
            "createdAt": iso_ms(record.created_at),
            "updatedAt": iso_ms(record.updated_at),
            "archived": record.archived_at is not None,
        }
        if record.archived_at is not None:
            body["archivedAt"] = iso_ms(record.archived_at)
        if with_history:
            body["propertiesWithHistory"] = {
                name: [{"value": v.value, "timestamp": iso_ms(v.timestamp), "sourceType": v.source_type}
                       for v in record.history.get(name, [])]
                for name in with_history if name in self.property_defs[object_type.name]
            }
        linked = {}
        for other in associations:
            ids = self.associated(object_type.name, record.id, other.name)
            if ids:
                label = f"{object_type.singular}_to_{other.singular}"
                linked[other.name] = {"results": [{"id": str(i), "type": label} for i, _ in ids]}
        if linked:
            body["associations"] = linked
        return body
