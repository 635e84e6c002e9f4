"""The HubSpot emulator's schema: object types (name, type id, stamps, default properties), the
HUBSPOT_DEFINED association type ids between them, and the error every layer raises.

Kept apart from the record store so the request handlers, the search and the property rules can
share it without importing the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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

