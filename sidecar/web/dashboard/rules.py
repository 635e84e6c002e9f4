"""The rules page: every rule of the active policy, what it is for, how often it fired, and its history."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.engine.clocks import SLA
from sidecar.engine.policies import PolicyBook
from sidecar.policy.rules import rule_lines
from sidecar.store.models import AuditRow, Clock, PolicyVersion


@dataclass(frozen=True)
class RuleView:
    id: str
    section: str
    purpose: str
    fired: int
    history: list[tuple[str, str]]  # (version, "added" | "changed" | "removed"), oldest first


@dataclass(frozen=True)
class VersionView:
    version: str
    label: str
    activated_at: str
    source_file: str
    active: bool


def versions(session: Session) -> list[VersionView]:
    rows = list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.activated_at)))
    return [VersionView(row.version, row.label, row.activated_at.isoformat(), row.source_file, i == len(rows) - 1)
            for i, row in enumerate(rows)]


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
    previous: dict[str, object] = {}
    latest: dict[str, tuple[str, str]] = {}
    for view in versions(session):
        lines = {line.id: line for line in rule_lines(book.get(session, view.version))}
        for rule_id, line in lines.items():
            if rule_id not in previous:
                history.setdefault(rule_id, []).append((view.version, "added"))
            elif previous[rule_id] != line.content:
                history[rule_id].append((view.version, "changed"))
            latest[rule_id] = (line.section, line.purpose)
        for rule_id in previous.keys() - lines.keys():
            history[rule_id].append((view.version, "removed"))
        previous = {rule_id: line.content for rule_id, line in lines.items()}
    active = [rule_id for rule_id in latest if rule_id in previous]
    gone = [rule_id for rule_id in latest if rule_id not in previous]
    return [RuleView(rule_id, latest[rule_id][0], latest[rule_id][1], fired.get(rule_id, 0), history[rule_id])
            for rule_id in active + gone]
