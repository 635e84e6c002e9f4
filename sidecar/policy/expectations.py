"""Expectations a scenario file carries (`expect:`), checked against what a replay actually did.

    expect:
      - {lead: aisha, kind: sla_breach, at: "09:00 America/New_York"}   # this audit kind, at this time
      - {lead: aisha, rule: sla.imminent, at: 48m}                      # a rule id, at start + 48 min
      - {lead: aisha, action: reassign}                                 # a typed action, any time
      - {lead: aisha, reassigned_to_team: us-east}                      # a reassignment into that team
      - {lead: aisha, reassigned_to: us-east-rep1}                      # ... to that rep
      - {lead: jonas, none: sla_breach}                                 # no row of this kind (or rule id)

`at` is "HH:MM ZONE" (on the scenario's first day in that zone), "YYYY-MM-DD HH:MM ZONE", an ISO
time with an offset, or an offset from `start` ("90m"). This module is pure: the replay that
produces the observations lives with the emulators, so the core never imports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_OFFSET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK = re.compile(r"^\s*(?:(\d{4}-\d{2}-\d{2})\s+)?(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")
KEYS = {"lead", "kind", "rule", "action", "at", "reassigned_to_team", "reassigned_to", "none"}
WHAT = ("kind", "rule", "action")


@dataclass(frozen=True)
class Observed:
    """One audit row of a replayed scenario, with lead and reps named by their scenario keys."""

    lead: str
    at: datetime
    kind: str
    rule_id: str | None
    action: str | None
    to_owner: str | None = None  # rep key (or CRM id of a queue) of an owner change
    to_team: str | None = None


@dataclass(frozen=True)
class Expectation:
    index: int
    lead: str
    field: str  # kind | rule | action | reassigned | none
    value: str
    at: datetime | None = None
    zone: tzinfo | None = None
    team: str | None = None  # reassigned: wanted team and/or rep
    rep: str | None = None

    def words(self) -> str:
        when = f" at {_clock(self.at, self.zone)}" if self.at else ""
        if self.field == "none":
            return f"no {self.value}"
        if self.field == "reassigned":
            to = " and ".join(x for x in (f"rep {self.rep}" if self.rep else "",
                                          f"team {self.team}" if self.team else "") if x)
            return f"reassigned to {to}{when}"
        label = {"kind": "", "rule": "rule ", "action": "action "}[self.field]
        return f"{label}{self.value}{when}"


@dataclass(frozen=True)
class Miss:
    expectation: Expectation
    actual: str


@dataclass(frozen=True)
class Outcome:
    checked: int
    misses: list[Miss]

    @property
    def passed(self) -> bool:
        return not self.misses


def parse_expectations(raw: Any, start: datetime, leads: set[str]) -> list[Expectation]:
    """Every problem at once, as `expect[i].key: what is wrong (how to fix)` lines in a ValueError."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("expect: give a list of {lead: ..., kind|rule|action|reassigned_to_team|none: ...}")
    problems: list[str] = []
    found: list[Expectation] = []
    for i, item in enumerate(raw):
        where = f"expect[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: give a mapping like {{lead: L1, kind: sla_breach}}")
            continue
        unknown = sorted(set(item) - KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {unknown} (use {', '.join(sorted(KEYS))})")
        lead = str(item.get("lead", ""))
        if lead not in leads:
            problems.append(f"{where}.lead: {lead or '(missing)'!s} is not a lead the scenario creates "
                            f"({', '.join(sorted(leads)) or 'none'})")
        at = zone = None
        if "at" in item:
            try:
                at, zone = parse_at(str(item["at"]), start)
            except ValueError as exc:
                problems.append(f"{where}.at: {exc}")
        chosen = [key for key in (*WHAT, "none") if key in item]
        reassigned = "reassigned_to_team" in item or "reassigned_to" in item
        if len(chosen) + reassigned != 1:
            problems.append(f"{where}: name exactly one of kind, rule, action, reassigned_to(_team), none")
            continue
        if reassigned:
            found.append(Expectation(i, lead, "reassigned", "reassign", at, zone,
                                     _opt(item.get("reassigned_to_team")), _opt(item.get("reassigned_to"))))
        else:
            if chosen[0] == "none" and at is not None:
                problems.append(f"{where}.at: `none` means never; drop `at`")
            found.append(Expectation(i, lead, chosen[0], str(item[chosen[0]]), at, zone))
    if problems:
        raise ValueError("\n".join(problems))
    return found


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_at(text: str, start: datetime) -> tuple[datetime, tzinfo]:
    offset = _OFFSET.match(text)
    if offset:
        zone = start.tzinfo
        assert zone is not None
        return start + timedelta(seconds=float(offset.group(1)) * _UNITS[offset.group(2)]), zone
    clock = _CLOCK.match(text)
    if clock:
        day, hour, minute, name = clock.groups()
        try:
            zone = ZoneInfo(name) if name else start.tzinfo
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r} (an IANA name such as America/New_York)") from exc
        assert zone is not None
        on = datetime.fromisoformat(day).date() if day else start.astimezone(zone).date()
        return datetime(on.year, on.month, on.day, int(hour), int(minute), tzinfo=zone), zone
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ValueError(f"{text!r}: write \"09:00 America/New_York\", \"2026-11-24 09:00 Europe/Berlin\", "
                         "an ISO time with an offset, or an offset from start like 90m")
    return at, at.tzinfo


def _clock(at: datetime, zone: tzinfo | None) -> str:
    local = at.astimezone(zone) if zone else at
    name = getattr(zone, "key", None) or local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {name}"


def _matches(expectation: Expectation, row: Observed) -> bool:
    if expectation.field == "kind":
        return row.kind == expectation.value
    if expectation.field == "rule":
        return row.rule_id == expectation.value
    if expectation.field == "none":
        return expectation.value in (row.kind, row.rule_id)
    # action and reassigned are typed (audit.StepAction), never the admin's kind label
    return row.action == expectation.value


def _describe(row: Observed, zone: tzinfo | None) -> str:
    text = f"{row.kind} at {_clock(row.at, zone)}" + (f" (rule {row.rule_id})" if row.rule_id else "")
    if row.action == "reassign":
        text += f" to {row.to_owner or '?'}" + (f" of team {row.to_team}" if row.to_team else "")
    return text


def check(expectations: list[Expectation], observed: list[Observed], zone: tzinfo | None = None) -> Outcome:
    """`zone`: how to show times of expectations that name none (the scenario's start)."""
    misses: list[Miss] = []
    for expectation in expectations:
        shown = expectation.zone or zone
        rows = [row for row in observed if row.lead == expectation.lead and _matches(expectation, row)]
        if expectation.field == "none":
            if rows:
                misses.append(Miss(expectation, "; ".join(_describe(r, shown) for r in rows)))
            continue
        if expectation.field == "reassigned":
            fitting = [r for r in rows if (expectation.team is None or r.to_team == expectation.team)
                       and (expectation.rep is None or r.to_owner == expectation.rep)]
        else:
            fitting = rows
        if expectation.at is not None:
            fitting = [r for r in fitting if r.at == expectation.at]
        if not fitting:
            actual = "; ".join(_describe(r, shown) for r in rows)
            misses.append(Miss(expectation, actual or f"no {expectation.value}"))
    return Outcome(len(expectations), misses)


def report_lines(outcome: Outcome, observed: list[Observed], names: dict[str, str],
                 zone: tzinfo | None) -> list[str]:
    """The readable diff: per lead, each unmet expectation and what happened instead, then the lead's
    whole timeline so that the fix (policy or expectation) can be chosen without another run."""
    lines: list[str] = []
    for lead in sorted({miss.expectation.lead for miss in outcome.misses}):
        name = names.get(lead)
        lines.append(f"  lead {lead}" + (f" ({name})" if name else ""))
        for miss in (m for m in outcome.misses if m.expectation.lead == lead):
            lines.append(f"    - expected: {miss.expectation.words()}   (expect[{miss.expectation.index}])")
            lines.append(f"    + actual:   {miss.actual}")
        timeline = [row for row in observed if row.lead == lead]
        lines.append("    what happened: " + (", ".join(
            f"{r.at.astimezone(zone):%a %H:%M} {r.kind}" for r in timeline) or "nothing was audited"))
    return lines
