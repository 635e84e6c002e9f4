"""Read a policy YAML file and report every problem at once, each with file, line, key and a fix.

Sections are validated one by one so that a mistake in `markets` does not hide one in `ladder`;
cross-section checks then run on whatever sections parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import TypeAdapter, ValidationError

from sidecar.domain import LeadState
from sidecar.policy.model import PROGRESS_TOKENS, Market, Policy, ladder_order_problems

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    line: int | None
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.key}: {self.message}"
        return f"{text}\n    fix: {self.fix}" if self.fix else text


class PolicyError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _key(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _line_map(text: str) -> dict[KeyPath, int]:
    """Map each key path of the YAML document to its 1-based line."""
    lines: dict[KeyPath, int] = {}

    def walk(node: yaml.Node, path: KeyPath) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


_FIXES = {
    "missing": "add this key (see config/policy.example.yaml)",
    "extra_forbidden": "remove the key or fix its spelling (see config/policy.example.yaml)",
    "enum": "use one of the values listed above",
    "literal_error": "use one of the values listed above",
}


class _Collector:
    def __init__(self, file: str, lines: dict[KeyPath, int]) -> None:
        self.file, self.lines = file, lines
        self.problems: list[Problem] = []

    def add(self, path: KeyPath, message: str, fix: str = "") -> None:
        line = None
        for cut in range(len(path), -1, -1):  # nearest enclosing key that has a line
            line = self.lines.get(path[:cut])
            if line is not None:
                break
        self.problems.append(Problem(self.file, _key(path), line, message, fix))

    def add_validation(self, base: KeyPath, error: ValidationError) -> None:
        for item in error.errors(include_url=False):
            loc = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
            message = str(item["msg"]).removeprefix("Value error, ")
            self.add((*base, *loc), message, _FIXES.get(item["type"], ""))


def load_policy(path: Path) -> Policy:
    """Parse and validate; raises PolicyError listing every problem."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([Problem(file, "(file)", None, f"cannot read: {exc.strerror}",
                                   "copy config/policy.example.yaml or run `sidecar init`")]) from exc
    try:
        raw = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError([Problem(file, "(syntax)", mark.line + 1 if mark else None,
                                   f"not valid YAML: {exc}", "fix the indentation or quoting")]) from exc
    return validate_policy(raw, file, lines)


def validate_policy(raw: Any, file: str = "<policy>", lines: dict[KeyPath, int] | None = None) -> Policy:
    out = _Collector(file, lines or {})
    if not isinstance(raw, dict):
        out.add((), "the policy must be a mapping of sections", "start from config/policy.example.yaml")
        raise PolicyError(out.problems)

    sections: dict[str, Any] = {}
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
        except ValidationError as exc:
            out.add_validation((name,), exc)
            salvaged = _valid_parts(annotation, raw[name])
            if salvaged is not None:
                sections[name] = salvaged
    for name in raw:
        if name not in Policy.model_fields:
            out.add((name,), "unknown section", _FIXES["extra_forbidden"])

    _check_markets(sections.get("markets", {}), out)
    _check_references(sections, out)
    if out.problems:
        raise PolicyError(out.problems)
    return Policy.model_validate(raw)


def _valid_parts(annotation: Any, value: Any) -> Any:
    """The items of a list/dict section that are valid on their own, so cross checks still run."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and isinstance(value, list):
        item: TypeAdapter[Any] = TypeAdapter(args[0])
        return [parsed for parsed in (_try(item, v) for v in value) if parsed is not None]
    if origin is dict and isinstance(value, dict):
        key_adapter: TypeAdapter[Any] = TypeAdapter(args[0])
        value_adapter: TypeAdapter[Any] = TypeAdapter(args[1])
        parts = {_try(key_adapter, k): _try(value_adapter, v) for k, v in value.items()}
        return {k: v for k, v in parts.items() if k is not None and v is not None}
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


def _check_references(sections: dict[str, Any], out: _Collector) -> None:
    markets = sections.get("markets", {})
    produced: set[LeadState] = {s for m in sections.get("states", {}).values() for s in m.map.values()}
    seen_ids: dict[str, KeyPath] = {}
    seen_keys: dict[tuple[str, str, str, str], str] = {}
    routes = sections.get("notifications", {})

    def rule_id(path: KeyPath, rule_id: str) -> None:
        if rule_id in seen_ids:
            out.add((*path, "id"), f"rule id {rule_id!r} is also used at {_key(seen_ids[rule_id])}",
                    "give every rule its own id")
        seen_ids[rule_id] = path

    def personas(path: KeyPath, names: list[Any]) -> None:
        for i, persona in enumerate(names):
            if "notifications" in sections and persona not in routes:
                out.add((*path, "notify", i), f"no route for persona {persona.value!r}",
                        f"add notifications.{persona.value} (slack_dm, team_channel or channel)")

    for i, window in enumerate(sections.get("windows", [])):
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
    for index, message in ladder_order_problems(sections.get("ladder", [])):
        out.add(("ladder", index, "at"), message, "order the steps by 'at', each larger than the last")
    for section in ("ladder", "stuck"):
        for i, step in enumerate(sections.get(section, [])):
            rule_id((section, i), step.id)
            personas((section, i), step.notify)
    for section in ("high_value", "compliance", "churn"):
        if sections.get(section) is not None:
            rule_id((section,), sections[section].id)
            personas((section,), sections[section].notify)
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
