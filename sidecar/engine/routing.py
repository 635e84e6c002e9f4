"""Who takes over a lead: an available rep of the same team, never anyone else.

Available = active, inside the team market's business hours, not on PTO, under capacity (open
leads in the shadow store). Seed 001 step 5: reassignment respects the team boundary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.domain import TERMINAL_STATES
from sidecar.engine.policies import PolicyBook
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


def _on_pto(session: Session, rep_ids: list[str], at: datetime) -> set[str]:
    rows = session.scalars(select(RepPto.rep_id).where(
        RepPto.rep_id.in_(rep_ids), RepPto.starts_at <= at, RepPto.ends_at > at))
    return set(rows)


def choose_new_owner(session: Session, book: PolicyBook, version: str, policy: Policy, lead: Lead,
                     at: datetime, strategy: str | None = None) -> Choice:
    strategy = strategy or policy.reassignment.strategy
    team = session.get(Team, lead.team_id) if lead.team_id else None
    if team is None:
        return Choice(None, strategy, "the owner has no team in the directory")
    # Same team, and a user of the lead's own CRM (a HubSpot owner cannot own a Salesforce lead).
    reps = list(session.scalars(select(Rep).where(
        Rep.team_id == team.id, Rep.role == "rep", Rep.crm == lead.crm, Rep.id != lead.owner_id,
    ).order_by(Rep.id)))
    if not reps:
        return Choice(None, strategy, f"team {team.name} has no other reps")
    ids = [rep.id for rep in reps]
    loads, pto = open_leads(session, ids), _on_pto(session, ids, at)
    calendar = book.calendar(version, policy, team.market)
    team_open = calendar.is_open(at)
    excluded: dict[str, str] = {}
    for rep in reps:
        if not rep.active:
            excluded[rep.id] = "inactive"
        elif rep.id in pto:
            excluded[rep.id] = "on PTO"
        elif not team_open:
            excluded[rep.id] = "outside hours"
        elif loads.get(rep.id, 0) >= rep.capacity:
            excluded[rep.id] = "at capacity"
    candidates = [rep for rep in reps if rep.id not in excluded]
    if not candidates:
        why = Counter(excluded.values())
        summary = " / ".join(f"{count} {reason}" for reason, count in why.most_common())
        return Choice(None, strategy, f"all {len(reps)} reps of {team.name} unavailable: {summary}", excluded)
    if strategy == "least_loaded":
        chosen = min(candidates, key=lambda rep: (loads.get(rep.id, 0), rep.id))
    elif strategy == "seniority":
        chosen = min(candidates, key=lambda rep: (-rep.seniority, loads.get(rep.id, 0), rep.id))
    else:
        chosen = _next_in_turn(session, team.id, candidates)
    return Choice(chosen, strategy, excluded=excluded)


def _next_in_turn(session: Session, team_id: str, candidates: list[Rep]) -> Rep:
    """Round robin over the team's reps in id order, skipping the unavailable; fair across restarts."""
    pointer = session.get(RoutingPointer, team_id)
    if pointer is None:
        pointer = RoutingPointer(team_id=team_id, last_rep_id=None)
        session.add(pointer)
    after = [rep for rep in candidates if pointer.last_rep_id is None or rep.id > pointer.last_rep_id]
    chosen = (after or candidates)[0]
    pointer.last_rep_id = chosen.id
    return chosen
