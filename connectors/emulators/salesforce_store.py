"""The emulated org's data: schemas, records, ids, system fields and field history.

Validation mirrors the DML errors the sidecar can meet in a real org (unknown or read-only fields,
missing required fields, bad references, inactive owners), because handling those is the point of
testing against an emulator rather than a mock.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from connectors.emulators.soql_lexer import parse_sf_datetime, to_18

KEY_PREFIXES = {"Lead": "00Q", "Task": "00T", "Event": "00U", "User": "005", "Group": "00G",
                "LeadHistory": "017"}
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order = numeric order


@dataclass(frozen=True)
class FieldSpec:
    type: str
    writable: bool = True  # createable and updateable through the API
    required: bool = False  # on create
    custom: bool = False
    # Custom-field attributes an admin ticks in Setup. Only an External ID field can key an upsert;
    # Unique makes the org refuse a second record with the same value (case-sensitive here, the
    # default unless "treat ABC and abc as duplicates" is chosen).
    external_id: bool = False
    unique: bool = False


_SYSTEM = ("Id:id! IsDeleted:boolean! CreatedDate:datetime! CreatedById:reference! "
           "LastModifiedDate:datetime! LastModifiedById:reference! SystemModstamp:datetime!")
# name:type, `*` required on create, `!` read-only (system or formula-like fields).
_SCHEMA_SOURCE = {
    "Lead": "FirstName:string LastName:string* Name:string! Company:string* Email:email Phone:phone "
            "Title:string Status:picklist LeadSource:picklist Rating:picklist Industry:picklist "
            "Country:string State:string IsConverted:boolean! IsUnreadByOwner:boolean "
            "LastActivityDate:date! OwnerId:reference",
    "Task": "WhoId:reference WhatId:reference Subject:combobox Status:picklist Priority:picklist "
            "ActivityDate:date Description:textarea_long Type:picklist TaskSubtype:picklist IsClosed:boolean! "
            "OwnerId:reference",
    "Event": "WhoId:reference WhatId:reference Subject:combobox StartDateTime:datetime EndDateTime:datetime "
             "ActivityDateTime:datetime DurationInMinutes:int Type:picklist Description:textarea_long "
             "OwnerId:reference",
    "User": "Username:string* FirstName:string LastName:string* Name:string! Email:email* Alias:string "
            "IsActive:boolean TimeZoneSidKey:picklist ManagerId:reference",
    "Group": "Name:string* DeveloperName:string Type:picklist Email:email OwnerId:reference",
    "LeadHistory": "LeadId:reference! Field:picklist! DataType:picklist! OldValue:anyType! NewValue:anyType!",
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Lead": {"Status": "Open - Not Contacted", "IsConverted": False, "IsUnreadByOwner": True},
    "Task": {"Status": "Not Started", "Priority": "Normal"},
    "User": {"IsActive": True, "TimeZoneSidKey": "America/Los_Angeles"},
    "Group": {"Type": "Queue"},
}
_REFERENCE_TARGETS = {"OwnerId": ("User", "Group"), "WhoId": ("Lead",), "ManagerId": ("User",)}
_HISTORY_TRACKED = {"Status": "Status", "OwnerId": "Owner"}  # Lead field -> LeadHistory.Field


def _parse_schema(source: str) -> dict[str, FieldSpec]:
    fields: dict[str, FieldSpec] = {}
    for item in source.split():
        name, ftype = item.split(":")
        fields[name] = FieldSpec(ftype.rstrip("*!"), writable="!" not in ftype, required="*" in ftype)
    return fields


def default_schemas() -> dict[str, dict[str, FieldSpec]]:
    system = _parse_schema(_SYSTEM)
    schemas = {name: {**system, **_parse_schema(source)} for name, source in _SCHEMA_SOURCE.items()}
    # Field history rows are immutable: no LastModified* / SystemModstamp.
    for name in ("LastModifiedDate", "LastModifiedById", "SystemModstamp"):
        del schemas["LeadHistory"][name]
    return schemas


# The dateTime formats Salesforce's REST API documents for record values ("Valid Date and DateTime
# Formats", developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_valid_date_formats.htm):
# yyyy-MM-ddTHH:mm:ss.SSS+/-HH:mm or yyyy-MM-ddTHH:mm:ss.SSSZ, "SSS is the optional three-digit
# milliseconds"; Salesforce renders offsets as +0000 itself, so +HHmm is taken too. A longer fraction
# (Python's microsecond isoformat(), .NET's 7 digits) is refused with JSON_PARSER_ERROR.
# A date field takes yyyy-MM-dd and nothing else (REST API "Valid Date and DateTime Formats": no
# offset); Python's date.fromisoformat would also take 20261126 or 2026-W48-4.
_WIRE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WIRE_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?(?:Z|[+-]\d{2}:?\d{2})")


def format_sf_datetime(moment: datetime) -> str:
    """Salesforce's REST rendering: UTC, milliseconds, `+0000` offset."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def object_summary(sobject: str, version: str) -> dict[str, Any]:
    """The describeGlobal entry of one sObject."""
    base = f"/services/data/v{version}/sobjects/{sobject}"
    writable = sobject != "LeadHistory"
    return {"name": sobject, "label": sobject, "keyPrefix": KEY_PREFIXES[sobject], "custom": False,
            "queryable": True, "createable": writable, "updateable": writable, "deletable": writable,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}


class RecordError(Exception):
    """A DML error as Salesforce reports it: errorCode, message and the offending fields."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields or []

    def as_dict(self, code_key: str = "errorCode") -> dict[str, Any]:
        return {code_key: self.code, "message": self.message, "fields": self.fields}


ChangeListener = Callable[[str, dict[str, Any] | None, dict[str, Any]], None]


# Lead Status of the emulated org: the standard values plus the ones the example policy maps (an
# admin adds "Compliance Hold" and friends in Setup > Object Manager > Lead > Fields > Lead Status).
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted",
                 "Qualified", "Unqualified", "Proposal", "On Hold", "Nurture", "Compliance Hold",
                 "Disqualified - Compliance")


class OrgStore:
    """Records by sObject type; every write goes through `validate` then `apply_*`, so a batch can be
    validated as a whole before anything is written (allOrNone)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.schemas = default_schemas()
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schemas}
        self.listeners: list[ChangeListener] = []
        self._counter = itertools.count(1)
        # Task statuses that close a task (Setup > Task Status picklist, "Closed" ticked); IsClosed
        # follows them. Orgs add their own ("Done", "Left voicemail"...).
        self.closed_task_statuses: set[str] = {"Completed"}
        # Restricted picklists ("Restrict picklist to the values defined in the value set"): an API
        # write of any other value is refused with INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, "bad value
        # for restricted picklist field: <value>" (Salesforce error reference; salesforcedictionary.com
        # errors/invalid-or-null-for-restricted-picklist). Helpers (system writes) are not checked.
        self.restricted_picklists: dict[tuple[str, str], set[str]] = {("Lead", "Status"): set(LEAD_STATUSES)}

    def field_types(self) -> dict[str, dict[str, str]]:
        return {name: {f: spec.type for f, spec in fields.items()} for name, fields in self.schemas.items()}

    def describe(self, sobject: str, version: str) -> dict[str, Any]:
        fields = [{"name": name, "label": name, "type": spec.type, "custom": spec.custom,
                   "createable": spec.writable, "updateable": spec.writable, "nillable": not spec.required,
                   "externalId": spec.external_id, "unique": spec.unique, "caseSensitive": spec.unique,
                   "referenceTo": list(_REFERENCE_TARGETS.get(name, ()))}
                  for name, spec in self.schemas[sobject].items()]
        return {**object_summary(sobject, version), "fields": fields}

    def add_field(self, sobject: str, name: str, ftype: str, *, custom: bool = True, external_id: bool = False,
                  unique: bool = False) -> None:
        self.schemas[sobject][name] = FieldSpec(ftype, custom=custom, external_id=external_id, unique=unique)
        for record in self.tables[sobject].values():
            record.setdefault(name, None)

    def new_id(self, sobject: str) -> str:
        number = next(self._counter)
        body = ""
        for _ in range(9):
            number, digit = divmod(number, 62)
            body = _BASE62[digit] + body
        return to_18(f"{KEY_PREFIXES[sobject]}Hp0{body}")

    def now(self) -> str:
        return format_sf_datetime(self.clock())

    def get(self, sobject: str, record_id: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        record = self.tables.get(sobject, {}).get(to_18(record_id))
        if record is None or (record["IsDeleted"] and not include_deleted):
            return None
        return record

    def find(self, record_id: str) -> tuple[str, dict[str, Any]] | None:
        for sobject, prefix in KEY_PREFIXES.items():
            if record_id.startswith(prefix) and (record := self.get(sobject, record_id)) is not None:
                return sobject, record
        return None

    # --- validation -------------------------------------------------------------------------------

    def validate(self, sobject: str, values: dict[str, Any], *, creating: bool,
                 system: bool = False, record_id: str | None = None, wire: bool = False) -> dict[str, Any]:
        """Canonical field names and values, or RecordError; `system` allows read-only fields.
        `record_id` is the record being updated (its own value of a Unique field is no clash).
        `wire`: the values came in a REST request, so datetimes must be in a documented format."""
        schema = self.schemas[sobject]
        by_lower = {name.lower(): name for name in schema}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key == "attributes":
                continue
            name = by_lower.get(key.lower())
            if name is None:
                raise RecordError("INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject}")
            if not schema[name].writable and not system:
                raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE",
                                  f"Unable to create/update fields: {name}. Please check the security "
                                  "settings of this field and verify that it is read/write for your profile "
                                  "or permission set.", [name])
            if wire and schema[name].type == "datetime" and value is not None:
                self._check_wire_datetime(name, value)
            if wire and schema[name].type == "date" and value is not None:
                self._check_wire_date(name, value)
            allowed = self.restricted_picklists.get((sobject, name))
            if wire and allowed is not None and value not in allowed:
                raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                  f"{name}: bad value for restricted picklist field: {value}", [name])
            clean[name] = self._coerce(name, schema[name].type, value)
        # On create every required field must be there; on update only the ones sent can be blanked.
        checked = schema if creating else clean
        missing = [n for n in checked if schema[n].required and clean.get(n) in (None, "")]
        if missing:
            message = f"Required fields are missing: [{', '.join(missing)}]"
            raise RecordError("REQUIRED_FIELD_MISSING", message, missing)
        for name, targets in _REFERENCE_TARGETS.items():
            if clean.get(name) is not None and name in schema:
                self._check_reference(sobject, name, str(clean[name]), targets)
        self._check_unique(sobject, clean, to_18(record_id) if record_id else None)
        return clean

    def matching(self, sobject: str, name: str, value: Any) -> list[str]:
        """Ids of the live records whose field `name` equals `value` (exact, case-sensitive)."""
        return [rid for rid, row in self.tables[sobject].items() if not row["IsDeleted"] and row.get(name) == value]

    def _check_unique(self, sobject: str, clean: dict[str, Any], record_id: str | None) -> None:
        schema = self.schemas[sobject]
        for name, value in clean.items():
            if value in (None, "") or not schema[name].unique:
                continue
            clash = next((rid for rid in self.matching(sobject, name, value) if rid != record_id), None)
            if clash is not None:
                # The wording of a unique-index violation in a real org.
                raise RecordError("DUPLICATE_VALUE", f"duplicate value found: {name} duplicates value on "
                                  f"record with id: {clash}", [])

    @staticmethod
    def _check_wire_datetime(name: str, value: Any) -> None:
        if not isinstance(value, str) or not _WIRE_DATETIME.fullmatch(value):
            raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of datetime from VALUE_STRING "
                              f"value {value} or request may be missing a required field", [name])

    @staticmethod
    def _check_wire_date(name: str, value: Any) -> None:
        if not isinstance(value, str) or not _WIRE_DATE.fullmatch(value):
            raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of date from VALUE_STRING "
                              f"value {value} or request may be missing a required field", [name])

    def _coerce(self, name: str, ftype: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            if ftype == "datetime":
                return format_sf_datetime(parse_sf_datetime(str(value)))
            if ftype == "date":
                return date.fromisoformat(str(value)).isoformat()
            if ftype == "boolean" and not isinstance(value, bool):
                raise ValueError(value)
            if ftype in ("double", "int", "currency", "percent"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(value)
                return int(value) if ftype == "int" else value
        except ValueError as exc:
            raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of {ftype} from value "
                              f"{value!r} for field {name}", [name]) from exc
        if ftype == "email" and "@" not in str(value):
            raise RecordError("INVALID_EMAIL_ADDRESS", f"{name}: invalid email address: {value}", [name])
        if ftype in ("id", "reference"):
            return to_18(str(value))
        return value

    def _check_reference(self, sobject: str, name: str, value: str, targets: tuple[str, ...]) -> None:
        found = self.find(value)
        if found is None or found[0] not in targets:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {value}", [name])
        if name == "OwnerId" and found[0] == "User" and not found[1].get("IsActive"):
            message = f"operation performed with inactive user [{value}] as owner of {sobject.lower()}"
            raise RecordError("INACTIVE_OWNER_OR_USER", message, [name])

    # --- writes -----------------------------------------------------------------------------------

    def apply_create(self, sobject: str, clean: dict[str, Any], actor: str) -> str:
        now = self.now()
        record: dict[str, Any] = dict.fromkeys(self.schemas[sobject])
        record.update(_DEFAULTS.get(sobject, {}))
        record.update(IsDeleted=False, CreatedDate=now, CreatedById=actor)
        if "SystemModstamp" in record:
            record.update(LastModifiedDate=now, LastModifiedById=actor, SystemModstamp=now)
        # System-mode callers (test helpers) may backdate CreatedDate and friends; the Id is ours.
        record.update({k: v for k, v in clean.items() if k != "Id"}, Id=self.new_id(sobject))
        if "OwnerId" in record and record["OwnerId"] is None:
            record["OwnerId"] = actor
        self._derive(sobject, record)
        self.tables[sobject][record["Id"]] = record
        if sobject == "Lead":
            self._history(record["Id"], "created", None, None, actor, record["CreatedDate"])
        self._notify(sobject, None, record)
        return str(record["Id"])

    def apply_update(self, sobject: str, record_id: str, clean: dict[str, Any], actor: str, *,
                     user_change: bool = True) -> None:
        """`user_change=False` models automation (e.g. a recalculated formula or a sharing
        recalculation): SystemModstamp moves, LastModifiedDate does not."""
        record = self.get(sobject, record_id)
        if record is None:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
        old = dict(record)
        now = self.now()
        record.update(clean)
        self._derive(sobject, record)
        record["SystemModstamp"] = now
        if user_change:
            record.update(LastModifiedDate=now, LastModifiedById=actor)
        if sobject == "Lead":
            for name, label in _HISTORY_TRACKED.items():
                if old[name] != record[name]:
                    self._history(record["Id"], label, old[name], record[name], actor, now)
        self._notify(sobject, old, record)

    def apply_delete(self, sobject: str, record_id: str, actor: str) -> None:
        record = self.get(sobject, record_id)
        if record is None:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
        now = self.now()
        record.update(IsDeleted=True, SystemModstamp=now, LastModifiedDate=now, LastModifiedById=actor)

    def _derive(self, sobject: str, record: dict[str, Any]) -> None:
        if sobject in ("Lead", "User"):
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
        if sobject == "Task":
            record["IsClosed"] = record.get("Status") in self.closed_task_statuses
            if "CompletedDateTime" in record:  # where the org's schema has it (see reps.py)
                # Salesforce stamps CompletedDateTime when a task is closed and clears it when it is
                # reopened; a value given on create (an import, a test helper) is kept.
                if not record["IsClosed"]:
                    record["CompletedDateTime"] = None
                elif record["CompletedDateTime"] is None:
                    record["CompletedDateTime"] = self.now()

    def _history(self, lead_id: str, field: str, old: Any, new: Any, actor: str, now: str) -> None:
        # An owner change writes two rows in a real org: one with the owners' names, one with their
        # ids (DataType "EntityId"). Readers of LeadHistory have to cope with both.
        rows = [("EntityId" if field == "Owner" else "Text", old, new)]
        if field == "Owner":
            rows.insert(0, ("Text", self._name_of(old), self._name_of(new)))
        for data_type, old_value, new_value in rows:
            row_id = self.new_id("LeadHistory")
            self.tables["LeadHistory"][row_id] = {
                "Id": row_id, "IsDeleted": False, "LeadId": lead_id, "Field": field, "DataType": data_type,
                "OldValue": old_value, "NewValue": new_value, "CreatedDate": now, "CreatedById": actor,
            }

    def _name_of(self, record_id: Any) -> Any:
        found = self.find(str(record_id)) if record_id else None
        return found[1].get("Name") if found else record_id

    def notify(self, sobject: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self._notify(sobject, old, new)

    def _notify(self, sobject: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(sobject, old, dict(new))
