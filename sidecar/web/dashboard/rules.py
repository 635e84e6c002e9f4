"""The rules page: every rule of the active policy, what it is for, how often it fired, and its history;
every recorded policy version with what changed from the one before (the `sidecar policy diff` words)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.engine.clocks import SLA
from sidecar.engine.policies import PolicyBook
from sidecar.policy.diff import diff_policies, field_changes
from sidecar.policy.rules import rule_lines
from sidecar.store.models import AuditRow, Clock, PolicyVersion


@dataclass(frozen=True)
class RuleView:
    id: str
    section: str
    purpose: str
    fired: int
    history: list[tuple[str, str]]  # (version, "added" | "changed: <what>" | "removed"), oldest first


@dataclass(frozen=True)
class VersionView:
    version: str
    label: str
    activated_at: str
    source_file: str
    active: bool
    changes: list[str]  # what changed from the version before, e.g. "new.default changed: window: 4h -> 2h"


def versions(session: Session, book: PolicyBook) -> list[VersionView]:
    rows = list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.activated_at)))
    views = []
    for i, row in enumerate(rows):
        changes = [] if i == 0 else [
            f"{change.id} {change.change}" + (f": {change.detail}" if change.detail else "")
            for change in diff_policies(book.get(session, rows[i - 1].version), book.get(session, row.version))]
        views.append(VersionView(row.version, row.label, row.activated_at.isoformat(), row.source_file,
                                 i == len(rows) - 1, changes))
    return views


def rule_views(session: Session, book: PolicyBook) -> list[RuleView]:
    """Rules of the active policy first, then rules that only older versions had."""
    fired = {str(rule): int(n) for rule, n in session.execute(
        select(AuditRow.rule_id, func.count()).where(AuditRow.rule_id.is_not(None), AuditRow.actor == "system",
               AuditRow.step_key.not_like("%:ignored"))
        .group_by(AuditRow.rule_id))}
    # A window rule "fires" when an SLA clock starts under it; clocks and steps use different rule ids.
    # The stuck clock started beside it carries the same window rule, but is not a second firing.
    for rule, n in session.execute(select(Clock.rule_id, func.count()).where(Clock.kind == SLA)
                                   .group_by(Clock.rule_id)):
        fired[str(rule)] = fired.get(str(rule), 0) + int(n)
    history: dict[str, list[tuple[str, str]]] = {}
    previous: dict[str, dict[str, object]] = {}
    latest: dict[str, tuple[str, str]] = {}
    for view in versions(session, book):
        lines = {line.id: line for line in rule_lines(book.get(session, view.version))}
        for rule_id, line in lines.items():
            if rule_id not in previous:
                history.setdefault(rule_id, []).append((view.version, "added"))
            elif previous[rule_id] != line.content:
                history[rule_id].append((view.version, f"changed: {field_changes(previous[rule_id], line.content)}"))
            latest[rule_id] = (line.section, line.purpose)
        for rule_id in previous.keys() - lines.keys():
            history[rule_id].append((view.version, "removed"))
        previous = {rule_id: line.content for rule_id, line in lines.items()}
    active = [rule_id for rule_id in latest if rule_id in previous]
    gone = [rule_id for rule_id in latest if rule_id not in previous]
    return [RuleView(rule_id, latest[rule_id][0], latest[rule_id][1], fired.get(rule_id, 0), history[rule_id])
            for rule_id in active + gone]
