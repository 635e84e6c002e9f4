"""In-memory CRM data of the HubSpot emulator: records with per-property value history,
associations and owners, and how a record renders in API answers.

No HTTP here; `hubspot.py` maps requests onto this store and `ApiError`s onto HubSpot's error
bodies. Object types live in `hubspot_schema`, property definitions and value checks in
`hubspot_properties`. Callers hold the emulator's lock, so the store itself is not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.emulators.hubspot_properties import PropertyDef, default_property_defs, normalise_values
from connectors.emulators.hubspot_schema import (
    ASSOCIATION_TYPES,
    OBJECT_TYPES,
    ApiError,
    ObjectType,
    iso_ms,
    resolve_type,
)

# Re-exported: modules and tests written before the split import these from here.
__all__ = ["ASSOCIATION_TYPES", "OBJECT_TYPES", "ApiError", "ObjectType", "Owner", "PropertyDef", "Record",
           "Store", "Version", "iso_ms", "resolve_type"]


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
        """HubSpot's stored strings for `props` (see `hubspot_properties.normalise_values`)."""
        active = {owner.id: not owner.archived for owner in self.owners.values()}
        return normalise_values(self.property_defs[object_type.name], object_type, props, strict, active)

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
