"""HubSpot record JSON -> `LeadSnapshot`, driven by the `FieldMap`. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.hubspot.fields import FieldMap
from sidecar.domain import Crm, Intent, LeadSnapshot, ProgressActivity


def parse_time(raw: Any) -> datetime | None:
    """HubSpot datetimes arrive as ISO-8601 with Z, or as epoch milliseconds in strings."""
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _number(raw: str | None) -> float | None:
    if raw in (None, ""):
        return None
    try:
        return float(str(raw))
    except ValueError:
        return None


def entered_current_value(history: Sequence[Mapping[str, Any]] | None) -> datetime | None:
    """When the property took its current value: the oldest entry of the newest run of equal
    values (HubSpot may record re-sets of the same value; those are not transitions)."""
    if not history:
        return None
    current = history[0].get("value")
    since = history[0].get("timestamp")
    for version in history[1:]:  # newest first
        if version.get("value") != current:
            break
        since = version.get("timestamp")
    return parse_time(since)


MERGED_IDS = "hs_merged_object_ids"  # contacts: the ids merged into this one, ";"-separated


def merged_ids(record: Mapping[str, Any]) -> list[str]:
    raw = (record.get("properties") or {}).get(MERGED_IDS) or ""
    return [part.strip() for part in str(raw).split(";") if part.strip() and part.strip() != str(record.get("id"))]


def merged_snapshot(survivor: LeadSnapshot, merged_id: str, fields: FieldMap) -> LeadSnapshot:
    """The lead `merged_id`, merged into `survivor`: reported with the deleted status, at the
    survivor's stamp, and `merged_into` naming the survivor (the core closes it and links both)."""
    return LeadSnapshot(crm=Crm.HUBSPOT, crm_id=merged_id, crm_status=fields.deleted_status,
                        crm_modified_at=survivor.crm_modified_at, merged_into=survivor.crm_id)


def to_snapshot(record: Mapping[str, Any], fields: FieldMap,
                activities: Iterable[ProgressActivity] = (), *, deleted: bool = False) -> LeadSnapshot:
    """`deleted`: the record was read as archived (deleted or merged away): its status is
    `fields.deleted_status` and its stamp the archive time, so the core closes its clocks."""
    props: Mapping[str, str | None] = record.get("properties") or {}
    history: Mapping[str, Any] = record.get("propertiesWithHistory") or {}

    def get(name: str) -> str | None:
        value = props.get(name) if name else None
        return value if value not in ("", None) else None

    modified = parse_time(get(fields.modified_property)) or parse_time(record.get("updatedAt"))
    archived_at = parse_time(record.get("archivedAt")) if deleted else None
    if modified is not None and archived_at is not None:
        modified = max(modified, archived_at)
    if modified is None:
        raise ValueError(f"HubSpot record {record.get('id')} has no {fields.modified_property}")
    name = " ".join(p for p in (get(fields.first_name), get(fields.last_name)) if p)
    intent_raw = (get(fields.intent) or "").lower()
    flags = frozenset(flag for prop, flag in fields.flags.items() if (get(prop) or "").lower() == "true")
    created = parse_time(get("createdate") or get("hs_createdate") or record.get("createdAt"))
    return LeadSnapshot(
        crm=Crm.HUBSPOT,
        crm_id=str(record["id"]),
        crm_status=fields.deleted_status if deleted else get(fields.status) or "",
        crm_modified_at=modified,
        name=name,
        company=get(fields.company) or "",
        email=get(fields.email) or "",
        market=fields.market.apply(get(fields.market.property)),
        source=fields.source.apply(get(fields.source.property)),
        intent=Intent(intent_raw) if intent_raw in Intent.__members__.values() else None,
        score=_number(get(fields.score)),
        tier=get(fields.tier),
        deal_size=_number(get(fields.deal_size)),
        owner_id=get(fields.owner),
        created_at=created,
        status_changed_at=entered_current_value(history.get(fields.status)),
        owner_changed_at=entered_current_value(history.get(fields.owner)),
        flags=flags,
        activities=tuple(sorted(activities, key=lambda a: (a.at, a.crm_id))),
        country=get(fields.country) if fields.country else None,
    )
