"""Salesforce rows -> LeadSnapshot: fields by the field map, transitions from LeadHistory,
progress from completed Tasks and past Events.

Converted leads (IsConverted) report `converted_status` and deleted ones (IsDeleted, seen through
queryAll) `deleted_status`, whatever their Status says: both end the lead's clocks through the
policy's normal status map (states.salesforce) instead of a special case in the core.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.salesforce.fields import FieldMap
from sidecar.domain import Crm, Intent, LeadSnapshot, ProgressActivity, ProgressKind
from sidecar.ports import FIRST_RESPONSE_TASK_PREFIX

CONVERTED_STATUS = "Closed - Converted"
DELETED_STATUS = "Closed - Not Converted"
LEAD_PREFIX = "00Q"


def parse_time(value: Any) -> datetime | None:
    """Salesforce datetimes (`2026-11-25T08:00:00.000+0000`) as aware datetimes."""
    return datetime.fromisoformat(str(value)) if value else None


def stamp_of(row: Mapping[str, Any]) -> datetime:
    stamp = parse_time(row.get("SystemModstamp"))
    assert stamp is not None, "SystemModstamp is selected on every streamed row"
    return stamp


@dataclass
class Related:
    """What LeadHistory, Task and Event say about a set of leads, keyed by lead id."""

    status_at: dict[str, datetime] = field(default_factory=dict)
    owner_at: dict[str, datetime] = field(default_factory=dict)
    activities: defaultdict[str, dict[str, ProgressActivity]] = field(
        default_factory=lambda: defaultdict(dict))

    def add_history(self, rows: Iterable[Mapping[str, Any]]) -> None:
        # An owner change writes two rows (names and ids) with one CreatedDate; the latest wins.
        for row in rows:
            target = self.status_at if row.get("Field") == "Status" else self.owner_at
            at = parse_time(row.get("CreatedDate"))
            lead = str(row.get("LeadId"))
            if at is not None and (lead not in target or at > target[lead]):
                target[lead] = at

    def add_tasks(self, rows: Iterable[Mapping[str, Any]], fields: FieldMap) -> None:
        for row in rows:
            kind = fields.task_kinds.get(str(row.get("TaskSubtype")))
            if fields.key_field and str(row.get(fields.key_field) or "").startswith(FIRST_RESPONSE_TASK_PREFIX):
                kind = ProgressKind.FIRST_RESPONSE_TASK_COMPLETED  # our own task, completed by the rep
            who = str(row.get("WhoId") or "")
            completed = row.get(fields.task_completed_at) if fields.task_completed_at else None
            at = parse_time(completed) or parse_time(row.get("LastModifiedDate"))
            if kind is not None and who.startswith(LEAD_PREFIX) and at is not None:
                self.activities[who][row["Id"]] = ProgressActivity(row["Id"], kind, at, row.get("OwnerId"))

    def add_events(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            who, at = str(row.get("WhoId") or ""), parse_time(row.get("EndDateTime"))
            if who.startswith(LEAD_PREFIX) and at is not None:
                activity = ProgressActivity(row["Id"], ProgressKind.MEETING_HELD, at, row.get("OwnerId"))
                self.activities[who][row["Id"]] = activity


def _text(record: Mapping[str, Any], name: str | None) -> str:
    return "" if name is None or record.get(name) is None else str(record[name])


def _number(record: Mapping[str, Any], name: str | None) -> float | None:
    value = record.get(name) if name else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _intent(record: Mapping[str, Any], fields: FieldMap) -> Intent | None:
    value = fields.intent.value(record)
    try:
        return Intent(value.lower()) if value else None
    except ValueError:
        return None  # an unknown value: let the policy derive intent instead of guessing


def crm_status(record: Mapping[str, Any], fields: FieldMap) -> str:
    if record.get("IsDeleted"):
        return fields.deleted_status
    if record.get("IsConverted"):
        return fields.converted_status
    return _text(record, fields.status)


def to_snapshot(record: Mapping[str, Any], fields: FieldMap, related: Related) -> LeadSnapshot:
    lead_id = str(record["Id"])
    name = " ".join(_text(record, n) for n in fields.name if record.get(n))
    created = parse_time(record.get("CreatedDate"))
    activities = tuple(sorted(related.activities.get(lead_id, {}).values(), key=lambda a: (a.at, a.crm_id)))
    return LeadSnapshot(
        crm=Crm.SALESFORCE, crm_id=lead_id, crm_status=crm_status(record, fields),
        crm_modified_at=stamp_of(record), name=name, company=_text(record, fields.company),
        email=_text(record, fields.email), market=fields.market.value(record),
        source=fields.source.value(record),
        intent=_intent(record, fields), score=_number(record, fields.score),
        tier=_text(record, fields.tier) or None, deal_size=_number(record, fields.deal_size),
        owner_id=_text(record, fields.owner) or None, created_at=created,
        # No history row means no transition since creation (or history tracking is off).
        status_changed_at=related.status_at.get(lead_id, created),
        owner_changed_at=related.owner_at.get(lead_id, created),
        flags=frozenset(flag for name_, flag in fields.flags.items() if record.get(name_) is True),
        activities=activities,
        country=_text(record, fields.country) or None,
    )
