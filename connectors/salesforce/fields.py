"""The Salesforce field map as data: which Lead/Task/User fields mean what for the sidecar.

Loaded from YAML (see config/salesforce.fields.example.yaml, documented inline) so that an admin
adapts the connector to their org without code. `missing_fields` checks the map against the org's
describe so `sidecar check` can name every field that does not exist.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml

from sidecar.domain import ProgressKind

# Read on every poll whatever the map says: the cursor, the close rules and the clocks need them.
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SYSTEM_FIELDS = ("Id", "SystemModstamp", "LastModifiedDate", "CreatedDate", "IsConverted", "IsDeleted")


@dataclass(frozen=True)
class MappedField:
    """A field plus an optional value map (our code by their value); unmapped values pass through."""

    field: str | None
    map: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def value(self, record: Mapping[str, Any]) -> str | None:
        if self.field is None or record.get(self.field) in (None, ""):
            return None
        raw = str(record[self.field])
        return self.map.get(raw, raw)


@dataclass(frozen=True)
class FieldMap:
    name: tuple[str, ...] = ("FirstName", "LastName")
    company: str | None = "Company"
    email: str | None = "Email"
    market: MappedField = MappedField("Country")
    source: MappedField = MappedField("LeadSource")
    status: str = "Status"
    owner: str = "OwnerId"
    score: str | None = None
    tier: str | None = None
    deal_size: str | None = None
    intent: MappedField = MappedField(None)
    flags: Mapping[str, str] = field(default_factory=dict)  # checkbox field -> flag name
    tags: str | None = None  # Lead field the sidecar adds tags to (multi-select picklist or text, ";"-separated)
    task_kinds: Mapping[str, ProgressKind] = field(default_factory=lambda: {
        "Call": ProgressKind.CALL_LOGGED, "Email": ProgressKind.EMAIL_SENT})
    task_completed_at: str | None = "CompletedDateTime"
    meetings: bool = True
    user_team: str | None = None
    key_field: str | None = "Sidecar_Key__c"
    reminders: bool = True
    converted_status: str = "Closed - Converted"  # reported for IsConverted leads
    deleted_status: str = "Closed - Not Converted"  # reported for leads deleted in Salesforce
    # How far behind its cursor a poll looks for rows committed late: SystemModstamp is set when a
    # row is written, not when its transaction commits, so a long transaction makes rows visible
    # minutes later with stamps older than the cursor. Longer than the org's longest transaction.
    lookback_seconds: float = 300.0
    # Daily API allowance guard (see quota.py): at or above this fraction of the org's daily limit
    # (None: never), polls run at most once per `slow_interval_seconds`.
    quota_guard: float | None = 0.9
    slow_interval_seconds: float = 600.0

    @property
    def lookback(self) -> timedelta:
        return timedelta(seconds=self.lookback_seconds)

    def lead_fields(self) -> list[str]:
        """Every Lead field a read selects, each once, system fields first."""
        mapped = [*self.name, self.company, self.email, self.market.field, self.source.field, self.status,
                  self.owner, self.score, self.tier, self.deal_size, self.intent.field, *self.flags]
        return list(dict.fromkeys([*SYSTEM_FIELDS, *(f for f in mapped if f)]))

    def task_fields(self) -> list[str]:
        fields = ["Id", "WhoId", "TaskSubtype", "LastModifiedDate", "SystemModstamp", "OwnerId"]
        return [*fields, self.task_completed_at] if self.task_completed_at else fields

    def writer_task_fields(self) -> list[str]:
        fields = ["WhoId", "OwnerId", "Subject", "Description", "ActivityDate", "Priority", "Status",
                  "TaskSubtype"]
        if self.reminders:
            fields += ["ReminderDateTime", "IsReminderSet"]
        return [*fields, self.key_field] if self.key_field else fields

    def user_fields(self) -> list[str]:
        fields = ["Id", "Name", "Email", "IsActive", "ManagerId"]
        return [*fields, self.user_team] if self.user_team else fields


class _Errors(list[str]):
    def need(self, condition: bool, message: str) -> None:
        if not condition:
            self.append(message)


def _number(raw: Any) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def _mapped(raw: Any, key: str, errors: _Errors) -> MappedField:
    if raw is None or isinstance(raw, str):
        return MappedField(raw)
    if not isinstance(raw, dict):
        errors.append(f"{key}: give a field name or {{field: ..., map: {{...}}}}")
        return MappedField(None)
    values = raw.get("map") or {}
    errors.need(isinstance(values, dict), f"{key}.map: must be a mapping of your value -> our code")
    return MappedField(raw.get("field"), {str(k): str(v) for k, v in dict(values).items()})


def parse_field_map(raw: Mapping[str, Any], source: str = "<field map>") -> FieldMap:
    """Build a FieldMap, reporting every problem at once (ValueError naming file and key)."""
    errors = _Errors()
    lead, acts = dict(raw.get("lead") or {}), dict(raw.get("activities") or {})
    users, writer = dict(raw.get("users") or {}), dict(raw.get("writer") or {})
    polling = dict(raw.get("polling") or {})
    lookback = polling.get("lookback_seconds", 300)
    errors.need(isinstance(lookback, int | float) and not isinstance(lookback, bool) and lookback >= 0,
                "polling.lookback_seconds: a number of seconds >= 0 (default 300)")
    guard = polling.get("quota_guard", 0.9)
    errors.need(guard is None or (_number(guard) and 0 < guard <= 1),
                "polling.quota_guard: a fraction of the daily API limit, > 0 and <= 1 (default 0.9), or null")
    slow = polling.get("slow_interval_seconds", 600)
    errors.need(_number(slow) and slow > 0, "polling.slow_interval_seconds: a number of seconds > 0 (default 600)")
    name = lead.get("name", ["FirstName", "LastName"])
    name = [name] if isinstance(name, str) else list(name or [])
    errors.need(bool(name), "lead.name: list one field (Name) or several (FirstName, LastName)")
    kinds: dict[str, ProgressKind] = {}
    default_kinds = {"Call": "call_logged", "Email": "email_sent"}
    for subtype, kind in dict(acts.get("task_kinds") or default_kinds).items():
        try:
            kinds[str(subtype)] = ProgressKind(kind)
        except ValueError:
            errors.append(f"activities.task_kinds.{subtype}: {kind!r} is not one of "
                          f"{', '.join(k.value for k in ProgressKind)}")
    flags = lead.get("flags") or {}
    errors.need(isinstance(flags, dict), "lead.flags: must map checkbox field -> flag name")
    for key in ("status", "owner"):
        errors.need(bool(lead.get(key, "x")), f"lead.{key}: required")
    result = FieldMap(
        name=tuple(str(n) for n in name), company=lead.get("company", "Company"),
        email=lead.get("email", "Email"),
        market=_mapped(lead.get("market", "Country"), "lead.market", errors),
        source=_mapped(lead.get("source", "LeadSource"), "lead.source", errors),
        status=lead.get("status", "Status"), owner=lead.get("owner", "OwnerId"), score=lead.get("score"),
        tier=lead.get("tier"), deal_size=lead.get("deal_size"),
        intent=_mapped(lead.get("intent"), "lead.intent", errors),
        flags={str(k): str(v) for k, v in dict(flags if isinstance(flags, dict) else {}).items()},
        tags=lead.get("tags"),
        task_kinds=kinds, task_completed_at=acts.get("task_completed_at", "CompletedDateTime"),
        meetings=bool(acts.get("meetings", True)), user_team=users.get("team"),
        key_field=writer.get("key_field", "Sidecar_Key__c"), reminders=bool(writer.get("reminders", True)),
        converted_status=str(lead.get("converted_status", "Closed - Converted")),
        deleted_status=str(lead.get("deleted_status", "Closed - Not Converted")),
        lookback_seconds=float(lookback) if isinstance(lookback, int | float) else 300.0,
        quota_guard=float(guard) if _number(guard) else (None if guard is None else 0.9),
        slow_interval_seconds=float(slow) if _number(slow) else 600.0,
    )
    named = dict.fromkeys([*result.lead_fields(), *result.task_fields(), *result.writer_task_fields(),
                           *result.user_fields(), *([result.tags] if result.tags else [])])
    errors += [f"{n!r} is not a Salesforce field API name" for n in named if not _API_NAME.match(n)]
    if errors:
        raise ValueError("\n".join(f"{source}: {message}" for message in errors))
    return result


def load_field_map(path: Path) -> FieldMap:
    return parse_field_map(yaml.safe_load(path.read_text()) or {}, str(path))


class Describer(Protocol):
    def describe_fields(self, sobject: str) -> set[str]: ...


KEY_FIELD_HELP = (
    "without it the writer still works, but slower: before creating tasks it reads every Task on the "
    "leads concerned and looks for the [sidecar:<key>] line in Description (Long Text Area, which "
    "SOQL cannot filter), instead of one upsert per 200 tasks. Create it in Setup > Object Manager > "
    "Activity > Fields & Relationships > New: Text(255), tick 'Unique' (case sensitive) and "
    "'External ID', give the integration user edit access; or set writer.key_field: null to "
    "silence this")


def missing_fields(client: Describer, fields: FieldMap) -> list[str]:
    """Configured fields the org lacks, as `Object.Field` (three describe calls). A missing key
    field is reported with what it costs and how to create it."""
    lead = [*fields.lead_fields(), *([fields.tags] if fields.tags else [])]
    wanted = {"Lead": lead, "Task": [*fields.task_fields(), *fields.writer_task_fields()],
              "User": fields.user_fields()}
    missing: list[str] = []
    for sobject, names in wanted.items():
        existing = {n.lower() for n in client.describe_fields(sobject)}
        for name in dict.fromkeys(names):
            if name.lower() in existing:
                continue
            if sobject == "Task" and name == fields.key_field:
                missing.append(f"Task.{name}: {KEY_FIELD_HELP}")
            else:
                missing.append(f"{sobject}.{name}")
    return missing
