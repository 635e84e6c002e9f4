"""Owners and teams: who is overdue, how loaded, who is away, and how often they answer in time.

A clock does not store its owner: a breached clock counts for the owner its breach step names; any
other clock for the lead's owner now (reassignment only follows a breach, so that is the same rep).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.directory import show_directory
from sidecar.engine.clocks import SLA
from sidecar.engine.patterns import keys
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import Clock, Lead, RepPto, Team
from sidecar.web.dashboard.ladder import ladders
from sidecar.web.dashboard.queries import breach_rows


@dataclass
class Tally:
    on_time: int = 0
    breached: int = 0
    overdue: int = 0

    @property
    def rate(self) -> float | None:
        total = self.on_time + self.breached
        return self.on_time / total if total else None


@dataclass(frozen=True)
class OwnerRow:
    id: str
    name: str
    team: str
    crm: str
    capacity: int
    open_leads: int
    on_pto: bool
    pto: list[str]
    available: bool
    why_not: str
    tally: Tally


@dataclass(frozen=True)
class TeamRow:
    id: str
    name: str
    market: str
    manager: str
    reps: int
    away: int
    capacity: int
    open_leads: int
    tally: Tally


def tallies(session: Session, book: PolicyBook) -> tuple[dict[str, Tally], dict[str, Tally]]:
    """Per owner id and per team id: on-time and breached clocks, and open clocks now overdue.

    A breach counts for whoever owned the lead when it breached (the breach step's audit row says),
    not for the rep it was reassigned to afterwards."""
    facts = ladders(session, book)
    breached_by: dict[int, str] = {}
    for row, _ in breach_rows(session, facts, None):
        step = keys.parse_step_key(row.step_key or "")
        if step is not None and row.owner_id:
            breached_by[step[0]] = row.owner_id
    owners: dict[str, Tally] = {}
    teams: dict[str, Tally] = {}
    for clock, owner, team in session.execute(
            select(Clock, Lead.owner_id, Lead.team_id).join(Lead, Lead.id == Clock.lead_id)
            .where(Clock.kind == SLA)):  # the hit rate is the SLA ladder's; a stuck clock is no SLA
        breached = facts.breached(clock)
        owner = breached_by.get(clock.id, owner)
        for tally in (owners.setdefault(owner or "", Tally()), teams.setdefault(team or "", Tally())):
            tally.breached += breached
            tally.on_time += clock.status == "closed" and not breached
            tally.overdue += clock.status != "closed" and breached
    return owners, teams


def owner_rows(session: Session, book: PolicyBook, now: datetime) -> list[OwnerRow]:
    try:
        version, policy = book.active(session)
    except LookupError:
        return []
    owners, _ = tallies(session, book)
    team_names = {team.id: team.name for team in session.scalars(select(Team))}
    pto: dict[str, list[str]] = {}
    for row in session.scalars(select(RepPto).where(RepPto.ends_at > now).order_by(RepPto.starts_at)):
        pto.setdefault(row.rep_id, []).append(f"{row.starts_at:%d %b} – {row.ends_at:%d %b}")
    return [OwnerRow(str(rep["rep"]), str(rep["name"]), team_names.get(str(rep["team"]), "-"), str(rep["crm"]),
                     int(rep["capacity"]), int(rep["open_leads"]), bool(rep["on_pto"]), pto.get(str(rep["rep"]), []),
                     bool(rep["available"]), str(rep["why_not"]), owners.get(str(rep["rep"]), Tally()))
            for rep in show_directory(session, book, version, policy, now)]


def team_rows(session: Session, book: PolicyBook, now: datetime) -> list[TeamRow]:
    owners = owner_rows(session, book, now)
    _, teams = tallies(session, book)
    reps_by_team: dict[str, list[OwnerRow]] = {}
    for owner in owners:
        reps_by_team.setdefault(owner.team, []).append(owner)
    managers = {owner.id: owner.name for owner in owners}
    rows = []
    for team in session.scalars(select(Team).order_by(Team.name)):
        members = reps_by_team.get(team.name, [])
        rows.append(TeamRow(team.id, team.name, team.market, managers.get(team.manager_id or "", "-"),
                            len(members), sum(m.on_pto for m in members), sum(m.capacity for m in members),
                            sum(m.open_leads for m in members), teams.get(team.id, Tally())))
    return rows

