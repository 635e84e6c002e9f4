"""Which HubSpot object is a lead and which properties hold each field, declared as data.

Loaded from YAML (see `config/hubspot.fields.example.yaml`, where every key is documented) so that
a portal with custom properties needs a config change, not code. `missing_properties` lists what
the portal lacks, for `sidecar check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from sidecar.ports import PermanentError

if TYPE_CHECKING:
    from connectors.hubspot.api import HubSpotApi

# Object name -> (type id used in record links, the modification-stamp property).
OBJECTS = {"contacts": ("0-1", "lastmodifieddate"), "leads": ("0-136", "hs_lastmodifieddate")}


def _frozen(values: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in (values or {}).items()})


@dataclass(frozen=True)
class ValueMap:
    """A property whose values are translated (country -> market, analytics source -> source)."""

    property: str = ""
    values: Mapping[str, str] = field(default_factory=lambda: _frozen({}))

    def apply(self, raw: str | None) -> str | None:
        if not raw:
            return None
        return self.values.get(raw, raw)


@dataclass(frozen=True)
class FieldMap:
    object: str = "contacts"
    portal_id: str = "0"
    first_name: str = "firstname"
    last_name: str = "lastname"
    company: str = "company"
    email: str = "email"
    status: str = "hs_lead_status"
    owner: str = "hubspot_owner_id"
    score: str = "hubspotscore"
    tier: str = ""
    deal_size: str = ""
    intent: str = ""
    modified: str = ""
    country: str = ""  # a property holding the ISO country code (compliance: licensed jurisdictions)
    status_reason: str = ""  # where a status change's reason goes (compliance rejection); "" = a note only
    tags: str = ""  # a multiple-checkbox property that LeadUpdate.add_tags adds options to (churn-risk-elevated)
    market: ValueMap = field(default_factory=lambda: ValueMap("country"))
    source: ValueMap = field(default_factory=lambda: ValueMap("hs_analytics_source"))
    flags: Mapping[str, str] = field(default_factory=lambda: _frozen({}))  # property -> flag name
    # Reported as the status of a lead deleted (archived) or merged away in HubSpot; map it to
    # CLOSED in the policy's states.hubspot so its clocks end.
    deleted_status: str = "DELETED"
    # How far behind its cursor a poll looks for leads that reached the search index late.
    lookback_seconds: float = 600.0
    # First poll only: engagements modified within this many days give backfilled leads their
    # progress (older ones are irrelevant to clocks measured in hours and days).
    backfill_activity_days: float = 30.0
    # Daily API allowance guard (see quota.py): at or above this fraction of the portal's daily
    # limit (None: never), polls run at most once per `slow_interval_seconds`.
    quota_guard: float | None = 0.9
    slow_interval_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.object not in OBJECTS:
            raise ValueError(f"hubspot fields: object must be one of {sorted(OBJECTS)}, not {self.object!r}")
        if self.quota_guard is not None and not 0 < self.quota_guard <= 1:
            raise ValueError(f"hubspot fields: polling.quota_guard must be > 0 and <= 1 (or null), "
                             f"not {self.quota_guard!r}")
        if self.slow_interval_seconds <= 0:
            raise ValueError("hubspot fields: polling.slow_interval_seconds must be > 0, "
                             f"not {self.slow_interval_seconds!r}")

    @property
    def type_id(self) -> str:
        return OBJECTS[self.object][0]

    @property
    def modified_property(self) -> str:
        return self.modified or OBJECTS[self.object][1]

    @property
    def history_properties(self) -> list[str]:
        """Properties whose value timelines give exact transition times."""
        return [p for p in (self.status, self.owner) if p]

    def properties(self) -> list[str]:
        """Every property a lead read asks for (empty names are unused fields)."""
        names = [self.first_name, self.last_name, self.company, self.email, self.status, self.owner,
                 self.score, self.tier, self.deal_size, self.intent, self.modified_property,
                 self.market.property, self.source.property, "createdate", "hs_createdate", self.country,
                 *self.flags]
        return list(dict.fromkeys(n for n in names if n))


_SCALARS = {f.name for f in fields(FieldMap)} - {"market", "source", "flags", "object", "portal_id",
                                                 "deleted_status", "lookback_seconds", "backfill_activity_days",
                                                 "quota_guard", "slow_interval_seconds"}


def load_field_map(path: Path) -> FieldMap:
    raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    props = raw.get("properties") or {}
    unknown = sorted(set(props) - _SCALARS)
    if unknown:
        raise ValueError(f"{path}: unknown keys under properties: {', '.join(unknown)} "
                         f"(expected some of {', '.join(sorted(_SCALARS))})")

    def value_map(key: str, default: str) -> ValueMap:
        section = raw.get(key) or {}
        return ValueMap(str(section.get("property", default) or ""), _frozen(section.get("values")))

    polling = raw.get("polling") or {}
    numbers = {}
    for key, default in (("lookback_seconds", 600.0), ("backfill_activity_days", 30.0)):
        value = polling.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{path}: polling.{key}: a number >= 0 (default {default:g})")
        numbers[key] = float(value)
    guard = polling.get("quota_guard", 0.9)
    if guard is not None and (isinstance(guard, bool) or not isinstance(guard, int | float) or not 0 < guard <= 1):
        raise ValueError(f"{path}: polling.quota_guard: a fraction of the daily API limit, > 0 and <= 1 "
                         "(default 0.9), or null")
    slow = polling.get("slow_interval_seconds", 600.0)
    if isinstance(slow, bool) or not isinstance(slow, int | float) or slow <= 0:
        raise ValueError(f"{path}: polling.slow_interval_seconds: a number of seconds > 0 (default 600)")
    return FieldMap(object=str(raw.get("object", "contacts")), portal_id=str(raw.get("portal_id", "0")),
                    market=value_map("market", "country"), source=value_map("source", "hs_analytics_source"),
                    flags=_frozen(raw.get("flags")), deleted_status=str(raw.get("deleted_status", "DELETED")),
                    lookback_seconds=numbers["lookback_seconds"],
                    backfill_activity_days=numbers["backfill_activity_days"],
                    quota_guard=None if guard is None else float(guard), slow_interval_seconds=float(slow),
                    **{k: str(v or "") for k, v in props.items()})


def missing_properties(api: HubSpotApi, field_map: FieldMap) -> list[str]:
    """Properties the map names that the portal does not define, as messages for `sidecar check`."""
    scope = f"crm.schemas.{field_map.object}.read"
    try:
        body = api.call("general", "crm.properties.core_api", "get_all", field_map.object, scope=scope)
    except PermanentError as exc:
        # A message, not an exception: `sidecar check` lists every problem it finds in one run.
        return [f"{field_map.object} properties could not be listed ({scope}): {exc}"]
    defined = {p["name"] for p in (body or {}).get("results") or []}
    # createdate/hs_createdate: only one of them exists per object; either is fine.
    wanted = [p for p in field_map.properties() if p not in ("createdate", "hs_createdate")]
    wanted += [field_map.tags] if field_map.tags else []
    return [f"{field_map.object}.{name}: no such property in the portal (fix config/hubspot.fields.yaml "
            "or create it in HubSpot)" for name in wanted if name not in defined]
