"""What changed between two policies, in plain words, section by section (`sidecar policy diff|apply`).

Rules with ids (windows, ladder steps, tiers, stuck steps, markets, routes, assignment rules...) are
compared rule by rule; the sections without ids (states map, pause states, progress, noise,
reassignment, intent default, label) each get their own wording. A section that changed without a
sentence of its own still gets a field-by-field line, so no change is ever silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sidecar.policy.model import Policy
from sidecar.policy.rules import RuleLine, rule_lines


@dataclass(frozen=True)
class RuleChange:
    id: str  # the rule id, or the section (e.g. "pause_states", "states.salesforce")
    change: str  # added | removed | changed
    detail: str  # plain words


def _show(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _flatten(content: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(content, dict) and content:
        flat: dict[str, Any] = {}
        for key, value in content.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: content}


def field_changes(old: Any, new: Any) -> str:
    """"window: 24h -> 12h; notify: now also manager, no longer owner" for two dumped models."""
    before, after = _flatten(old), _flatten(new)
    parts: list[str] = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        name = key or "value"
        if isinstance(a, list | type(None)) and isinstance(b, list | type(None)) and \
                all(not isinstance(x, dict | list) for x in (a or []) + (b or [])):
            gained = [x for x in b or [] if x not in (a or [])]
            lost = [x for x in a or [] if x not in (b or [])]
            words = ([f"now also {_show(gained)}"] if gained else []) + ([f"no longer {_show(lost)}"] if lost else [])
            parts.append(f"{name}: " + (", ".join(words) or f"order {_show(a)} -> {_show(b)}"))
        else:
            parts.append(f"{name}: {_show(a)} -> {_show(b)}")
    return "; ".join(parts)


def _lines(policy: Policy) -> dict[str, RuleLine]:
    lines = {line.id: line for line in rule_lines(policy)}
    for rule in policy.assignment.rules:  # `policy show` lists them under assignment; compare them too
        lines[rule.id] = RuleLine(rule.id, "assignment", rule.purpose or
                                  f"assign leads matching {rule.when.model_dump(exclude_none=True)} to team "
                                  f"{rule.team}", rule.model_dump(mode="json"))
    return lines


def _rule_changes(old: Policy, new: Policy) -> list[RuleChange]:
    before, after = _lines(old), _lines(new)
    changes = [RuleChange(i, "removed", before[i].purpose) for i in sorted(before.keys() - after.keys())]
    changes += [RuleChange(i, "added", after[i].purpose) for i in sorted(after.keys() - before.keys())]
    changes += [RuleChange(i, "changed", field_changes(before[i].content, after[i].content))
                for i in sorted(before.keys() & after.keys()) if before[i].content != after[i].content]
    return changes


def _states(old: Policy, new: Policy) -> list[RuleChange]:
    changes: list[RuleChange] = []
    for crm in sorted(old.states.keys() | new.states.keys()):
        a, b = old.states.get(crm), new.states.get(crm)
        section = f"states.{crm}"
        if a is None or b is None:
            changes.append(RuleChange(section, "added" if a is None else "removed",
                                      f"{crm} status mapping {'added' if a is None else 'removed'}"))
            continue
        words = [f"status field {a.field} -> {b.field}"] if a.field != b.field else []
        for status in sorted(a.map.keys() | b.map.keys()):
            was, now = a.map.get(status), b.map.get(status)
            if was == now:
                continue
            if was is None:
                words.append(f"{crm} status {status!r} now maps to {now}")
            elif now is None:
                words.append(f"{crm} status {status!r} is no longer mapped (was {was})")
            else:
                words.append(f"{crm} status {status!r} maps to {now} instead of {was}")
        if words:
            changes.append(RuleChange(section, "changed", "; ".join(words)))
    return changes


def _pause(old: Policy, new: Policy) -> list[RuleChange]:
    gained = [s.value for s in new.pause_states if s not in old.pause_states]
    lost = [s.value for s in old.pause_states if s not in new.pause_states]
    words = [f"{s} now pauses clocks" for s in gained] + [f"{s} no longer pauses clocks" for s in lost]
    return [RuleChange("pause_states", "changed", "; ".join(words))] if words else []


def _progress(old: Policy, new: Policy) -> list[RuleChange]:
    changes: list[RuleChange] = []
    for state in sorted(old.progress.keys() | new.progress.keys(), key=str):
        a, b = old.progress.get(state, []), new.progress.get(state, [])
        words = [f"{x} now counts as progress" for x in b if x not in a]
        words += [f"{x} no longer counts as progress" for x in a if x not in b]
        if words:
            changes.append(RuleChange(f"progress.{state.value}", "changed", f"{state.value}: " + "; ".join(words)))
    return changes


def _noise(old: Policy, new: Policy) -> list[RuleChange]:
    a, b = old.noise, new.noise
    words = []
    if (a.max_per_recipient, a.window_minutes) != (b.max_per_recipient, b.window_minutes):
        words.append(f"at most {a.max_per_recipient} warnings per recipient per {a.window_minutes} min -> "
                     f"{b.max_per_recipient} per {b.window_minutes} min")
    if a.digest != b.digest:
        words.append("held warnings now go out as one digest" if b.digest else "held warnings are no longer "
                     "sent as a digest")
    return [RuleChange("noise", "changed", "; ".join(words))] if words else []


def _simple(old: Policy, new: Policy) -> list[RuleChange]:
    changes: list[RuleChange] = []
    if old.label != new.label:
        changes.append(RuleChange("label", "changed", f"label {old.label!r} -> {new.label!r} (a name only; "
                                                      "the version is the content)"))
    if old.default_market != new.default_market:
        changes.append(RuleChange("default_market", "changed", "leads without a market are counted in "
                                  f"{_show(old.default_market)} -> {_show(new.default_market)}"))
    if old.intent.default != new.intent.default:
        changes.append(RuleChange("intent.default", "changed", "leads no intent rule matches get intent "
                                  f"{old.intent.default.value} -> {new.intent.default.value}"))
    for name, a, b in (("strategy", old.reassignment.strategy, new.reassignment.strategy),
                       ("high-value strategy", old.reassignment.high_value_strategy,
                        new.reassignment.high_value_strategy)):
        if a != b:
            changes.append(RuleChange("reassignment", "changed", f"reassignment {name} {a} -> {b}"))
    if old.assignment.enabled != new.assignment.enabled:
        changes.append(RuleChange("assignment", "changed", "initial assignment of unowned leads turned "
                                  + ("on" if new.assignment.enabled else "off")))
    order = ([r.id for r in old.assignment.rules], [r.id for r in new.assignment.rules])
    if set(order[0]) == set(order[1]) and order[0] != order[1]:
        changes.append(RuleChange("assignment", "changed", "assignment rules reordered (the first match wins): "
                                  f"{_show(order[0])} -> {_show(order[1])}"))
    windows = ([w.id for w in old.windows], [w.id for w in new.windows])
    if set(windows[0]) == set(windows[1]) and windows[0] != windows[1]:
        changes.append(RuleChange("windows", "changed", "window rules reordered (ties go to the earlier rule): "
                                  f"{_show(windows[0])} -> {_show(windows[1])}"))
    return changes


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _dump(item) for key, item in value.items()}
    return value


# Which top-level sections each part of the diff speaks for (the rest fall back to field changes).
_SECTIONS = ("label", "markets", "default_market", "states", "intent", "windows", "ladder", "stuck",
             "pause_states", "progress", "high_value", "compliance", "churn", "notifications", "reassignment",
             "noise", "assignment", "first_response", "calibration")


def diff_policies(old: Policy, new: Policy) -> list[RuleChange]:
    changes = _simple(old, new) + _rule_changes(old, new) + _states(old, new) + _pause(old, new) \
        + _progress(old, new) + _noise(old, new)
    said = {change.id.split(".")[0] for change in changes} | {
        line.section for line in _lines(old).values() if any(c.id == line.id for c in changes)} | {
        line.section for line in _lines(new).values() if any(c.id == line.id for c in changes)}
    for section in _SECTIONS:
        a, b = getattr(old, section), getattr(new, section)
        if a != b and section not in said:
            changes.append(RuleChange(section, "changed", field_changes(_dump(a), _dump(b))))
    return changes
