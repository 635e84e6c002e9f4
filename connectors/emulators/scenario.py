"""Scenario files: a scripted day the demo and tests replay against the emulated CRMs.

    start: 2026-11-24T08:00:00-05:00        # aware ISO time: the virtual clock starts here
    crm: salesforce                          # salesforce | hubspot | both
    directory: config/directory.yaml         # optional; default: the synthetic org's directory
    policy: config/policy.example.yaml       # optional
    duration: 4h                             # optional: how long `sidecar policy test` replays it
    expect:                                  # optional: checked by `sidecar policy test`
      - {lead: L1, kind: sla_breach, at: "09:00 America/New_York"}
    events:
      - {at: 0m,  create_lead: {id: L1, name: Aisha Al-Mansoori, company: Emirates Group, market: US-East,
                                source: paid_social, status: "Open - Not Contacted", owner: us-east-rep3}}
      - {at: 40m, log_call: {lead: L1, by: us-east-rep3}}
      - {at: 2d,  set_status: {lead: L1, status: "Working - Contacted"}}

Each event has an offset `at` ("90m", "4h", "2d") from `start` and exactly one action (a
`create_lead` may name its `crm` when the scenario runs both; default: the first):
create_lead, log_call, send_email, set_status, set_owner, set_field, set_pto, and for the
escalation patterns:

    - {at: 2h, set_score: {lead: L1, score: 91}}            # the CRM's score field (field map)
    - {at: 3h, flag: {lead: L1, flag: sanctions_match}}     # a compliance/churn flag field set true
    - {at: 4h, signal: {lead: L1, type: usage_drop, id: sig-1}}   # as POST /api/signals
    - {at: 5h, complete_task: {lead: L1, task: first_response}}   # or `any` sidecar task; the owner ticks it
    - {at: 6h, compliance_decision: {lead: L1, decision: clear, reason: "false positive", by: ana}}

Leads and reps are named by scenario keys (`id`, `owner`, `by`, `rep`); the demo maps them to CRM
ids (`by` of a compliance_decision is the deciding user's name, as `sidecar compliance --by`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

ACTIONS = {
    "create_lead": {"id", "name", "company", "email", "market", "source", "status", "owner", "score", "tier",
                    "deal_size", "flags", "crm"},
    "log_call": {"lead", "by"},
    "send_email": {"lead", "by"},
    "set_status": {"lead", "status", "by"},
    "set_owner": {"lead", "owner", "by"},
    "set_field": {"lead", "field", "value", "by"},
    "set_pto": {"rep", "from", "to"},
    "set_score": {"lead", "score"},
    "flag": {"lead", "flag"},
    "signal": {"lead", "type", "id"},
    "complete_task": {"lead", "task"},
    "compliance_decision": {"lead", "decision", "reason", "by"},
}
REQUIRED = {"create_lead": {"id", "name"}, "log_call": {"lead"}, "send_email": {"lead"},
            "set_status": {"lead", "status"}, "set_owner": {"lead", "owner"},
            "set_field": {"lead", "field", "value"}, "set_pto": {"rep", "from", "to"},
            "set_score": {"lead", "score"}, "flag": {"lead", "flag"}, "signal": {"lead", "type", "id"},
            "complete_task": {"lead", "task"}, "compliance_decision": {"lead", "decision", "reason"}}
CHOICES = {("complete_task", "task"): ("first_response", "any"),
           ("compliance_decision", "decision"): ("clear", "reject")}
_OFFSET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ScenarioEvent:
    at: datetime
    action: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    start: datetime
    crm: Literal["salesforce", "hubspot", "both"]
    events: tuple[ScenarioEvent, ...]
    directory: Path | None = None
    policy: Path | None = None
    duration: timedelta | None = None  # how long `sidecar policy test` replays it (default 1 day)
    expect: tuple[Any, ...] = ()  # raw `expect:` items; sidecar.policy.expectations parses and checks them


def parse_offset(text: str) -> timedelta:
    match = _OFFSET.match(str(text))
    if not match:
        raise ValueError(f"offset {text!r}: write a number and a unit, like 90m, 4h or 2d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def load_scenario(path: Path) -> Scenario:
    """Parse and check a scenario file; every problem is reported at once."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}:\n  the file must be a mapping with start, crm and events (see config/scenarios/)")
    problems: list[str] = []
    start = raw.get("start")
    if isinstance(start, str):
        start = datetime.fromisoformat(start)
    if not isinstance(start, datetime) or start.tzinfo is None:
        problems.append("start: give an aware ISO time, e.g. 2026-11-24T08:00:00-05:00")
    crm = raw.get("crm", "salesforce")
    if crm not in ("salesforce", "hubspot", "both"):
        problems.append(f"crm: {crm!r} is not salesforce, hubspot or both")
    duration = None
    if raw.get("duration") is not None:
        try:
            duration = parse_offset(raw["duration"])
        except ValueError as exc:
            problems.append(f"duration: {exc}")
    expect = raw.get("expect") or []
    if not isinstance(expect, list):
        problems.append("expect: give a list of expectations, e.g. - {lead: L1, kind: sla_breach}")
    events: list[ScenarioEvent] = []
    for i, item in enumerate(raw.get("events") or []):
        where = f"events[{i}]"
        actions = [key for key in item if key != "at"] if isinstance(item, dict) else []
        if len(actions) != 1 or actions[0] not in ACTIONS:
            problems.append(f"{where}: needs `at` and exactly one of {', '.join(ACTIONS)}")
            continue
        action, args = actions[0], item[actions[0]] or {}
        unknown = set(args) - ACTIONS[action]
        missing = REQUIRED[action] - set(args)
        if unknown:
            problems.append(f"{where}.{action}: unknown keys {sorted(unknown)}")
        if missing:
            problems.append(f"{where}.{action}: missing {sorted(missing)}")
        for (name, key), allowed in CHOICES.items():
            if action == name and key in args and args[key] not in allowed:
                problems.append(f"{where}.{action}.{key}: {args[key]!r} is not {' or '.join(allowed)}")
        try:
            offset = parse_offset(item.get("at", ""))
        except ValueError as exc:
            problems.append(f"{where}.at: {exc}")
            continue
        if isinstance(start, datetime):
            events.append(ScenarioEvent(start + offset, action, _normalise(args)))
    if problems:
        raise ValueError(f"{path}:\n  " + "\n  ".join(problems))
    assert isinstance(start, datetime)
    base = path.parent
    return Scenario(start, crm, tuple(sorted(events, key=lambda e: e.at)),
                    base / raw["directory"] if raw.get("directory") else None,
                    base / raw["policy"] if raw.get("policy") else None, duration, tuple(expect))


def _normalise(args: dict[str, Any]) -> dict[str, Any]:
    out = dict(args)
    for key in ("from", "to"):
        if isinstance(out.get(key), str):
            out[key] = date.fromisoformat(out[key])
    return out
