"""What happened to each escalated lead, in one line a person reads: `sidecar demo`'s closing story,
e.g. "Aisha Al-Mansoori (owner Rep r3, Team us): warned 08:48 → breach 09:00 → reassigned to Rep r1 09:30".

Every step is read from typed facts, never from the admin's `kind` label: an SLA ladder step before
the first step at or past 100 % of its window (`details.fraction`, written by the engine) is a warning,
that first step of its clock is the breach (the dashboard's definition, sidecar.web.dashboard.ladder),
and an owner change says what it did by its typed `action` and `to_owner`. A lead is escalated once
its SLA clock breached or the engine changed its owner. Times are in the lead's market time zone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.audit import Pattern, StepAction
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import AuditRow, Lead, Rep, Team

WARNING, BREACH, AFTER = "warning", "breach", "after"
OWNER_CHANGES = {StepAction.REASSIGN.value, StepAction.QUEUE.value, StepAction.ASSIGN.value}


def _fraction(row: AuditRow) -> float | None:
    value = (row.details or {}).get("fraction")
    return float(value) if isinstance(value, int | float) else None


def ladder_phases(rows: list[AuditRow]) -> dict[int, str]:
    """Audit row id -> warning / breach / after, for the SLA ladder steps among `rows` (any order)."""
    phases: dict[int, str] = {}
    breached: set[object] = set()
    for row in sorted(rows, key=lambda r: (r.at, r.id)):
        fraction = _fraction(row)
        if row.pattern != Pattern.SLA.value or row.step_key is None or fraction is None:
            continue
        clock = (row.details or {}).get("clock_id")
        if fraction < 1.0:
            phases[row.id] = WARNING
        elif clock in breached:
            phases[row.id] = AFTER
        else:
            breached.add(clock)
            phases[row.id] = BREACH
    return phases


def ladder_counts(session: Session) -> Counter[str]:
    """How many warnings and breaches the SLA ladders fired ("warning": n, "breach": n, "after": n)."""
    rows = list(session.scalars(select(AuditRow).where(AuditRow.pattern == Pattern.SLA.value,
                                                       AuditRow.step_key.is_not(None))))
    return Counter(ladder_phases(rows).values())


@dataclass(frozen=True)
class Story:
    lead_name: str
    crm: str
    crm_id: str
    owner: str  # who owned the lead at its first escalation step
    team: str
    zone: str  # the IANA zone the times are in
    steps: list[tuple[datetime, str]]  # (local time, what happened)

    def line(self) -> str:
        first_day = self.steps[0][0].date()
        told = " → ".join(f"{what} {at:%H:%M}" if at.date() == first_day else f"{what} {at:%a %H:%M}"
                          for at, what in self.steps)
        return f"{self.lead_name} ({self.crm} {self.crm_id}, owner {self.owner}, {self.team}): {told}  [{self.zone}]"


def stories(session: Session, book: PolicyBook) -> list[Story]:
    """One story per escalated lead, by the time of its first step."""
    rows = session.scalars(select(AuditRow).where(AuditRow.lead_id.is_not(None), AuditRow.pattern.in_(
        (Pattern.SLA.value, Pattern.REVERT.value))).order_by(AuditRow.at, AuditRow.id)).all()
    by_lead: dict[int, list[AuditRow]] = {}
    for row in rows:
        by_lead.setdefault(row.lead_id or 0, []).append(row)
    names = {rep.id: rep.name for rep in session.scalars(select(Rep))}
    teams = {team.id: team.name for team in session.scalars(select(Team))}
    told: list[Story] = []
    for lead_id, lead_rows in by_lead.items():
        phases = ladder_phases(lead_rows)
        engine_moved = any(r.pattern == Pattern.SLA.value and r.action in OWNER_CHANGES for r in lead_rows)
        if BREACH not in phases.values() and not engine_moved:
            continue
        lead = session.get(Lead, lead_id)
        if lead is None:
            continue
        zone = _zone(session, book, lead, lead_rows[0])
        steps = [(row.at.astimezone(zone), what) for row in lead_rows
                 if (what := _what(row, phases.get(row.id), names)) is not None]
        first = lead_rows[0]
        owner = names.get(first.owner_id or "", first.owner_id or "nobody")
        team = teams.get(lead.team_id or "", lead.team_id or "no team")
        told.append(Story(lead.name or lead.crm_id, lead.crm, lead.crm_id, owner, team, str(zone), steps))
    return sorted(told, key=lambda story: story.steps[0][0])


def _zone(session: Session, book: PolicyBook, lead: Lead, row: AuditRow) -> ZoneInfo:
    version = row.policy_version or book.active(session)[0]
    return book.calendar(version, book.get(session, version), lead.market).tz


def _what(row: AuditRow, phase: str | None, names: dict[str, str]) -> str | None:
    to = names.get(row.to_owner or "", row.to_owner or "nobody")
    if row.pattern == Pattern.REVERT.value:
        return f"reverted to {to} by {row.actor}"
    if row.action == StepAction.REASSIGN.value:
        return f"reassigned to {to}"
    if row.action == StepAction.QUEUE.value:
        return f"sent to the queue {to}"
    if row.action == StepAction.ASSIGN.value:
        return f"assigned to {to}"
    if phase == WARNING:
        return "warned"
    if phase == BREACH:
        return "breach"
    if phase == AFTER:
        return "escalated"
    return None
