"""Facts about ladders that the dashboard, the API and /metrics share: which step is "the breach".

A step's audit `kind` is the admin's label, so a breach is found by its typed fraction instead: the
first ladder step at or past 100 % of the window. A clock is breached once it fired that step.
Only SLA clocks follow the ladder: a stuck clock's steps are the stuck multiples, never a breach.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.engine.clocks import SLA
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import Clock, PolicyVersion


@dataclass(frozen=True)
class Ladders:
    """Per policy version: the breach step's index and rule id, and every step's rule id in order."""

    breach_index: dict[str, int]
    breach_rule: dict[str, str]
    steps: dict[str, list[str]]

    def breached(self, clock: Clock) -> bool:
        index = self.breach_index.get(clock.policy_version)
        return clock.kind == SLA and index is not None and clock.steps_fired > index

    def is_breach(self, version: str | None, rule_id: str | None) -> bool:
        return version is not None and self.breach_rule.get(version) == rule_id

    def pending_rule(self, clock: Clock) -> str | None:
        steps = self.steps.get(clock.policy_version, []) if clock.kind == SLA else []
        return steps[clock.steps_fired] if clock.steps_fired < len(steps) else None


def ladders(session: Session, book: PolicyBook) -> Ladders:
    index: dict[str, int] = {}
    rule: dict[str, str] = {}
    steps: dict[str, list[str]] = {}
    for version in session.scalars(select(PolicyVersion.version)):
        ladder = book.get(session, version).ladder
        steps[version] = [step.id for step in ladder]
        first = next((i for i, step in enumerate(ladder) if step.at >= 1.0), None)
        if first is not None:
            index[version], rule[version] = first, ladder[first].id
    return Ladders(index, rule, steps)
