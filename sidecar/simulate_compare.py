"""What a policy did to a set of leads, and how two such accounts differ (`sidecar simulate`).

Read from the typed audit only (`pattern`, `action`, `to_owner`, and the ladder step's `fraction`),
never from the admin's `kind` labels, so a candidate policy that renames its steps compares fine:
- a warning is an SLA ladder step before 100 % of the window;
- a breach is a clock whose ladder reached 100 % (counted once per clock, however many steps follow);
- a reassignment is any decision that gave the lead to another rep (`StepAction.REASSIGN`);
- notifications are the decided messages (outbox `notify` rows) per persona.
The same function reads the recorded store and the simulated one, so both sides count alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.audit import Pattern, StepAction
from sidecar.store.models import AuditRow, Lead, OutboxRow, Rep, Team

LeadKey = tuple[str, str]  # (crm, crm_id): the same lead in the recorded and the simulated store
MEASURES = ("warnings", "breaches", "reassignments")
GROUPS = ("market", "source", "team")


@dataclass(frozen=True)
class Step:
    """One decision that counts: what (warning | breach | reassignment), when, by which rule, to whom."""

    what: str
    at: datetime
    rule_id: str | None
    to_owner: str | None = None


@dataclass
class LeadAccount:
    key: LeadKey
    name: str
    market: str
    source: str
    team: str
    steps: list[Step] = field(default_factory=list)

    def count(self, what: str) -> int:
        return sum(step.what == what for step in self.steps)

    def reassigned_to(self) -> tuple[str | None, ...]:
        return tuple(step.to_owner for step in self.steps if step.what == "reassignments")

    def outcome(self) -> tuple[int, int, tuple[str | None, ...]]:
        """What changes for the lead: how often it was warned and breached, and to whom it went."""
        return self.count("warnings"), self.count("breaches"), self.reassigned_to()


@dataclass
class Account:
    """Everything one policy did to the leads in scope."""

    leads: dict[LeadKey, LeadAccount]
    notifications: Counter[str]  # persona -> messages decided
    rep_names: dict[str, str]

    def total(self, what: str) -> int:
        return sum(lead.count(what) for lead in self.leads.values())

    def by(self, group: str, what: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        for lead in self.leads.values():
            counts[getattr(lead, group)] += lead.count(what)
        return counts


def _classify(row: AuditRow) -> str | None:
    if row.action == StepAction.REASSIGN.value:
        return "reassignments"
    fraction = row.details.get("fraction") if row.pattern == Pattern.SLA.value and row.action else None
    if not isinstance(fraction, int | float):
        return None
    return "warnings" if fraction < 1.0 else "breaches"


def account(session: Session, keys: set[LeadKey], start: datetime, end: datetime) -> Account:
    """What the store's audit says was done to `keys` between `start` and `end`."""
    teams = {str(i): str(n) for i, n in session.execute(select(Team.id, Team.name))}
    reps = {str(i): str(n) for i, n in session.execute(select(Rep.id, Rep.name))}
    leads = {(lead.crm, lead.crm_id): lead for lead in session.scalars(select(Lead))
             if (lead.crm, lead.crm_id) in keys}
    by_id = {lead.id: key for key, lead in leads.items()}
    result = {key: LeadAccount(key, lead.name, lead.market or "-", lead.source or "-",
                               teams.get(lead.team_id or "", lead.team_id or "-")) for key, lead in leads.items()}
    rows = session.scalars(select(AuditRow).where(AuditRow.lead_id.in_(by_id), AuditRow.at >= start,
                                                  AuditRow.at <= end).order_by(AuditRow.at, AuditRow.id))
    breached: set[tuple[int, object]] = set()
    for row in rows:
        what = _classify(row)
        if what is None or row.lead_id is None:
            continue
        if what == "breaches":  # once per clock: later steps past 100 % are the same breach
            clock = (row.lead_id, row.details.get("clock_id"))
            if clock in breached:
                continue
            breached.add(clock)
        result[by_id[row.lead_id]].steps.append(Step(what, row.at, row.rule_id, row.to_owner))
    messages = session.execute(select(OutboxRow.payload).join(AuditRow, AuditRow.id == OutboxRow.audit_id)
                               .where(OutboxRow.action == "notify", AuditRow.lead_id.in_(by_id),
                                      AuditRow.at >= start, AuditRow.at <= end))
    notifications = Counter(str(payload.get("persona")) for (payload,) in messages)
    return Account(result, notifications, reps)


@dataclass(frozen=True)
class Changed:
    lead: LeadAccount  # as the candidate left it
    before: tuple[int, int, tuple[str | None, ...]]
    after: tuple[int, int, tuple[str | None, ...]]


def changed_leads(active: Account, candidate: Account) -> list[Changed]:
    """Leads whose outcome (warnings, breaches, who they went to) differs, in name order."""
    out = []
    for key in sorted(set(active.leads) | set(candidate.leads)):
        before = active.leads[key].outcome() if key in active.leads else (0, 0, ())
        after = candidate.leads[key].outcome() if key in candidate.leads else (0, 0, ())
        if before != after:
            lead = candidate.leads.get(key) or active.leads[key]
            out.append(Changed(lead, before, after))
    return sorted(out, key=lambda c: (c.lead.name, c.lead.key))


def mismatches(expected: Account, actual: Account) -> dict[LeadKey, tuple[list[Step], list[Step]]]:
    """Leads whose steps differ in any way (what, instant, rule, new owner): the replay check."""
    out = {}
    for key in set(expected.leads) | set(actual.leads):
        want = expected.leads[key].steps if key in expected.leads else []
        got = actual.leads[key].steps if key in actual.leads else []
        if want != got:
            out[key] = (want, got)
    return out


def outcome_words(outcome: tuple[int, int, tuple[str | None, ...]], names: dict[str, str]) -> str:
    warnings, breaches, to = outcome
    moved = ", ".join(names.get(rep or "", rep or "nobody") for rep in to)
    return f"{warnings} warning(s), {breaches} breach(es), " + (f"reassigned to {moved}" if to else "not reassigned")
