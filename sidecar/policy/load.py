"""Read a policy YAML file and report every problem at once, each with file, line, key and a fix.

Sections are validated one by one so that a mistake in `markets` does not hide one in `ladder`;
cross-section checks then run on whatever sections parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from sidecar.config_yaml import ConfigError, KeyPath, Lines, Problem, did_you_mean, key_text, read_yaml
from sidecar.domain import LeadState
from sidecar.policy.markets import Market
from sidecar.policy.model import PROGRESS_TOKENS, Policy, ladder_order_problems

EXAMPLE = "config/policy.example.yaml"
_FIXES = {
    "missing": f"add this key (see {EXAMPLE})",
    "extra_forbidden": f"remove the key or fix its spelling (see {EXAMPLE})",
    "enum": "use one of the values listed",
    "literal_error": "use one of the values listed",
}


class PolicyError(ConfigError):
    """Every problem of a policy file at once."""


class _Collector:
    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, path: KeyPath, message: str, fix: str = "") -> None:
        self.problems.append(self.lines.problem(path, message, fix))

    def add_validation(self, base: KeyPath, error: ValidationError, annotation: Any) -> None:
        """Pydantic's errors in plain words, each at its key; an unknown key gets a "did you mean"."""
        for item in error.errors(include_url=False):
            loc = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
            kind = str(item["type"])
            if kind == "extra_forbidden" and loc:
                name = str(loc[-1])
                message = f"unknown key {name!r}" + did_you_mean(name, _names_at(annotation, loc[:-1]))
            elif kind == "missing":
                message = "required key is missing"
            else:
                message = str(item["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")
                found = item.get("input")
                if not isinstance(found, dict | list) and str(found) not in message:
                    message += f" (found {found!r})"
            self.add((*base, *loc), message, _FIXES.get(kind, ""))


def _members(annotation: Any) -> list[Any]:
    """The concrete types an annotation may hold: Annotated, Optional and unions unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is not None and origin not in (list, dict, tuple, set, frozenset):
        return [m for arg in get_args(annotation) for m in _members(arg)]  # Union / X | Y / Literal
    return [annotation]


def _names_at(annotation: Any, loc: KeyPath) -> set[str]:
    """Key names valid at `loc` below `annotation` (field names and aliases), for "did you mean"."""
    candidates = _members(annotation)
    for part in loc:
        children: list[Any] = []
        for member in candidates:
            origin = get_origin(member)
            if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
                field = member.model_fields.get(part) or next(
                    (f for f in member.model_fields.values() if f.alias == part), None)
                if field is not None:
                    children += _members(field.annotation)
            elif origin in (list, tuple) and isinstance(part, int):
                children += _members(get_args(member)[0])
            elif origin is dict:
                children += _members(get_args(member)[1])
        candidates = children or candidates  # an unknown part (a union tag) names no level of its own
    names: set[str] = set()
    for member in candidates:
        if isinstance(member, type) and issubclass(member, BaseModel):
            for name, field in member.model_fields.items():
                names |= {name, field.alias} - {None}  # type: ignore[arg-type]
    return names


def load_policy(path: Path) -> Policy:
    """Parse and validate; raises PolicyError listing every problem (duplicate keys included)."""
    try:
        raw, lines = read_yaml(path, EXAMPLE, keep_going=True)
    except ConfigError as exc:
        raise PolicyError(exc.problems) from exc
    return validate_policy(raw, str(path), lines)


def validate_policy(raw: Any, file: str = "<policy>", lines: Lines | None = None) -> Policy:
    out = _Collector(lines or Lines(file))
    out.problems += out.lines.duplicates
    if not isinstance(raw, dict):
        out.add((), "the policy must be a mapping of sections", f"start from {EXAMPLE}")
        raise PolicyError(out.problems)

    sections: dict[str, Any] = {}
    positions: dict[str, list[int]] = {}  # a salvaged list's item -> its index in the file
    for name, field in Policy.model_fields.items():
        if name not in raw:
            if field.is_required():
                out.add((name,), "required section is missing", _FIXES["missing"])
            continue
        annotation: Any = field.annotation
        if field.metadata:
            annotation = Annotated[(annotation, *field.metadata)]  # keep field-level validators
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        try:
            sections[name] = adapter.validate_python(raw[name])
            if isinstance(raw[name], list):
                positions[name] = list(range(len(raw[name])))
        except ValidationError as exc:
            out.add_validation((name,), exc, annotation)
            salvaged = _valid_parts(annotation, raw[name])
            if salvaged is not None:
                sections[name], kept = salvaged
                if kept is not None:
                    positions[name] = kept
    for name in raw:
        if name not in Policy.model_fields:
            out.add((name,), "unknown section" + did_you_mean(str(name), Policy.model_fields),
                    _FIXES["extra_forbidden"])

    _check_markets(sections.get("markets", {}), out)
    _check_references(sections, positions, out)
    if out.problems:
        raise PolicyError(sorted(out.problems, key=Problem.sort_key))
    return Policy.model_validate(raw)


def _valid_parts(annotation: Any, value: Any) -> tuple[Any, list[int] | None] | None:
    """The items of a list/dict section that are valid on their own, so cross checks still run.

    For a list, also the file index of each kept item: when windows[0] is broken, the window that
    was windows[1] must still be reported as windows[1] (and at its own line), not as windows[0]."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and isinstance(value, list):
        item: TypeAdapter[Any] = TypeAdapter(args[0])
        parsed = [(index, _try(item, v)) for index, v in enumerate(value)]
        kept = [(index, p) for index, p in parsed if p is not None]
        return [p for _index, p in kept], [index for index, _p in kept]
    if origin is dict and isinstance(value, dict):
        key_adapter: TypeAdapter[Any] = TypeAdapter(args[0])
        value_adapter: TypeAdapter[Any] = TypeAdapter(args[1])
        parts = {_try(key_adapter, k): _try(value_adapter, v) for k, v in value.items()}
        return {k: v for k, v in parts.items() if k is not None and v is not None}, None
    return None


def _try(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def _check_markets(markets: dict[str, Market], out: _Collector) -> None:
    for name, market in markets.items():
        try:
            market.calendar()
        except ValueError as exc:
            field = "tz" if "zone" in str(exc).lower() else "hours"
            out.add(("markets", name, field), str(exc),
                    "use an IANA zone like Europe/Berlin" if field == "tz"
                    else "write non-overlapping 'HH:MM-HH:MM' spans per weekday")


def _indexed(sections: dict[str, Any], positions: dict[str, list[int]], name: str) -> list[tuple[int, Any]]:
    """A list section's parsed items with their index in the file (broken items left out)."""
    items = sections.get(name, [])
    return list(zip(positions.get(name, range(len(items))), items, strict=False))


def _check_references(sections: dict[str, Any], positions: dict[str, list[int]], out: _Collector) -> None:
    markets = sections.get("markets", {})
    produced: set[LeadState] = {s for m in sections.get("states", {}).values() for s in m.map.values()}
    seen_ids: dict[str, KeyPath] = {}
    seen_keys: dict[tuple[str, str, str, str], str] = {}
    routes = sections.get("notifications", {})

    def rule_id(path: KeyPath, rule_id: str) -> None:
        if rule_id in seen_ids:
            out.add((*path, "id"), f"rule id {rule_id!r} is also used at {key_text(seen_ids[rule_id])}",
                    "give every rule its own id")
        seen_ids[rule_id] = path

    def personas(path: KeyPath, names: list[Any]) -> None:
        for i, persona in enumerate(names):
            if "notifications" in sections and persona not in routes:
                out.add((*path, "notify", i), f"no route for persona {persona.value!r}",
                        f"add notifications.{persona.value} (slack_dm, team_channel, channel, teams_chat "
                        "or teams_channel)")

    for i, window in _indexed(sections, positions, "windows"):
        path = ("windows", i)
        rule_id(path, window.id)
        if "markets" in sections and window.market != "*" and window.market not in markets:
            out.add((*path, "market"), f"unknown market {window.market!r}",
                    f"use '*' or one of: {', '.join(sorted(markets))}")
        if "states" in sections and window.state not in produced:
            out.add((*path, "state"),
                    f"no CRM status maps to {window.state.value}, so this window never applies",
                    "map a CRM status to it under states, or remove the rule")
        key = (window.state.value, window.market, window.source, str(window.intent))
        if key in seen_keys:
            out.add(path, f"same state/market/source/intent as rule {seen_keys[key]!r}",
                    "merge the two rules or make one more specific")
        seen_keys[key] = window.id
    ladder = _indexed(sections, positions, "ladder")
    for index, message in ladder_order_problems([step for _i, step in ladder]):
        out.add(("ladder", ladder[index][0], "at"), message, "order the steps by 'at', each larger than the last")
    for section in ("ladder", "stuck"):
        for i, step in _indexed(sections, positions, section):
            rule_id((section, i), step.id)
            personas((section, i), step.notify)
    for section in ("high_value", "compliance", "churn"):
        if sections.get(section) is not None:
            rule_id((section,), sections[section].id)
            personas((section,), sections[section].notify)
    compliance = sections.get("compliance")
    if compliance is not None:
        for market in compliance.licensed_jurisdictions:
            if "markets" in sections and market not in markets:
                out.add(("compliance", "licensed_jurisdictions", market), f"unknown market {market!r}",
                        f"use one of: {', '.join(sorted(markets))}")
        for crm, state_map in sections.get("states", {}).items():
            for needed in (LeadState.COMPLIANCE_HOLD, LeadState.DISQUALIFIED_COMPLIANCE, LeadState.NEW):
                if needed not in state_map.map.values():
                    out.add(("states", crm, "map"), f"no {crm} status maps to {needed.value}, so the "
                            "compliance hold cannot set it", f"add your {crm} status value for {needed.value}")
    intent = sections.get("intent")
    for i, rule in enumerate(intent.rules if intent is not None else []):
        rule_id(("intent", "rules", i), rule.id)
    for name, tier in (intent.tiers if intent is not None else {}).items():
        for i, step in enumerate(tier.ladder or []):
            rule_id(("intent", "tiers", name.value, "ladder", i), step.id)
            personas(("intent", "tiers", name.value, "ladder", i), step.notify)
    for state, tokens in sections.get("progress", {}).items():
        for i, token in enumerate(tokens):
            if token not in PROGRESS_TOKENS:
                out.add(("progress", state.value, i), f"unknown progress event {token!r}",
                        "use call_logged, email_sent, meeting_held, disqualified, "
                        "first_response_task_completed or state:<STATE>")
    for persona, route in routes.items():
        if route.via == "channel" and not route.channel:
            out.add(("notifications", persona.value, "channel"), "a channel route needs a channel",
                    "add channel: '#name' or use via: team_channel")
