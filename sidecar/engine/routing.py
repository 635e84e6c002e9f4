"""Who takes over a lead: an available rep of the same team, never anyone else.

Available = active, inside business hours (the team market's, or the rep's own shift where the
directory gives one), not on PTO, under capacity (open leads in the shadow store). Seed 001 step 5:
reassignment respects the team boundary. `availability` is the one place that decides this, so the
directory table, initial assignment and reassignment can never disagree about who is available.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.domain import TERMINAL_STATES
from sidecar.engine.policies import PolicyBook
from sidecar.policy.markets import Market
from sidecar.policy.model import Policy
from sidecar.store.models import Lead, Rep, RepPto, RoutingPointer, Team


@dataclass
class Choice:
    rep: Rep | None
    strategy: str
    reason: str = ""
    excluded: dict[str, str] = field(default_factory=dict)  # rep id -> why not


def open_leads(session: Session, rep_ids: list[str]) -> dict[str, int]:
    terminal = [state.value for state in TERMINAL_STATES]
    rows = session.execute(
        select(Lead.owner_id, func.count()).where(Lead.owner_id.in_(rep_ids), Lead.state.not_in(terminal))
        .group_by(Lead.owner_id)
    )
    return {str(owner): int(count) for owner, count in rows if owner is not None}


def on_pto(session: Session, rep_ids: list[str], at: datetime) -> set[str]:
    rows = session.scalars(select(RepPto.rep_id).where(
        RepPto.rep_id.in_(rep_ids), RepPto.starts_at <= at, RepPto.ends_at > at))
    return set(rows)


def team_reps(session: Session, team_id: str, crm: str, exclude: str | None = None) -> list[Rep]:
    """The team's routable reps of one CRM (a HubSpot owner cannot own a Salesforce lead), by id."""
    query = select(Rep).where(Rep.team_id == team_id, Rep.role == "rep", Rep.crm == crm)
    if exclude is not None:
        query = query.where(Rep.id != exclude)
    return list(session.scalars(query.order_by(Rep.id)))


def availability(session: Session, book: PolicyBook, version: str, policy: Policy, team: Team,
                 reps: list[Rep], at: datetime) -> dict[str, str | None]:
    """rep id -> None when the rep can take a lead at `at`, else the reason they cannot."""
    return _availability(session, book, version, policy, team, reps, at)[0]


def _availability(session: Session, book: PolicyBook, version: str, policy: Policy, team: Team,
                  reps: list[Rep], at: datetime) -> tuple[dict[str, str | None], dict[str, int]]:
    ids = [rep.id for rep in reps]
    loads, away = open_leads(session, ids), on_pto(session, ids, at)
    team_open = book.calendar(version, policy, team.market).is_open(at)
    reasons: dict[str, str | None] = {}
    for rep in reps:
        if not rep.active:
            reasons[rep.id] = "inactive"
        elif rep.id in away:
            reasons[rep.id] = "on PTO"
        elif not _in_hours(book, policy, team, rep, at, team_open):
            reasons[rep.id] = "outside hours"
        elif loads.get(rep.id, 0) >= rep.capacity:
            reasons[rep.id] = "at capacity"
        else:
            reasons[rep.id] = None
    return reasons, loads


def _in_hours(book: PolicyBook, policy: Policy, team: Team, rep: Rep, at: datetime, team_open: bool) -> bool:
    # A per-rep shift (`reps.hours`) replaces the team's hours for that rep; it keeps the market's
    # time zone and holidays. Built per call: shifts are rare and routing is not a hot path.
    hours = rep.hours
    if not hours:
        return team_open
    market = book.market(policy, team.market)[1]
    shift = Market(tz=market.tz, hours=hours, holidays=market.holidays)
    return shift.calendar().is_open(at)


def summarize(team: Team, reasons: dict[str, str]) -> str:
    why = Counter(reasons.values())
    summary = " / ".join(f"{count} {reason}" for reason, count in why.most_common())
    return f"all {len(reasons)} reps of {team.name} unavailable: {summary}"


def choose_new_owner(session: Session, book: PolicyBook, version: str, policy: Policy, lead: Lead,
                     at: datetime, strategy: str | None = None) -> Choice:
    strategy = strategy or policy.reassignment.strategy
    team = session.get(Team, lead.team_id) if lead.team_id else None
    if team is None:
        return Choice(None, strategy, "the owner has no team in the directory")
    reps = team_reps(session, team.id, lead.crm, exclude=lead.owner_id)
    if not reps:
        return Choice(None, strategy, f"team {team.name} has no other reps")
    reasons, loads = _availability(session, book, version, policy, team, reps, at)
    excluded = {rep_id: why for rep_id, why in reasons.items() if why is not None}
    candidates = [rep for rep in reps if rep.id not in excluded]
    if not candidates:
        return Choice(None, strategy, summarize(team, excluded), excluded)
    if strategy == "least_loaded":
        chosen = min(candidates, key=lambda rep: (loads.get(rep.id, 0), rep.id))
    elif strategy == "seniority":
        chosen = min(candidates, key=lambda rep: (-rep.seniority, loads.get(rep.id, 0), rep.id))
    else:
        chosen = next_in_turn(session, team.id, candidates)
    return Choice(chosen, strategy, excluded=excluded)


def next_in_turn(session: Session, team_id: str, candidates: list[Rep]) -> Rep:
    """Round robin over the team's reps in id order, skipping the unavailable; fair across restarts.

    One pointer per team, shared by initial assignment and reassignment, so a rep who just got a
    new lead is not first in line for the next breach of the same team.
    """
    # Locked on PostgreSQL: two sidecars deciding for one team at once must not both take the same turn.
    pointer = session.get(RoutingPointer, team_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if pointer is None:
        pointer = RoutingPointer(team_id=team_id, last_rep_id=None)
        session.add(pointer)
    after = [rep for rep in candidates if pointer.last_rep_id is None or rep.id > pointer.last_rep_id]
    chosen = (after or candidates)[0]
    pointer.last_rep_id = chosen.id
    return chosen
