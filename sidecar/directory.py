"""The sales directory: teams, reps, managers, capacity and PTO.

CRM user lists say who exists; what a CRM does not know (team boundaries as the sidecar must
respect them, capacity, seniority, Slack channels, PTO) comes from `config/directory.yaml`.
Applying a directory upserts teams and reps and replaces the PTO ranges it names.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete
from sqlalchemy.orm import Session

from sidecar.policy.model import Policy
from sidecar.store.models import Rep, RepPto, Team


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Pto(_Strict):
    start: date = Field(alias="from")
    end: date = Field(alias="to")  # inclusive: the rep is away all of this day too


class TeamEntry(_Strict):
    id: str
    name: str
    market: str
    manager: str | None = None  # rep id of the team lead
    slack_channel: str | None = None
    ops_queue: str | None = None  # CRM queue id that takes leads nobody can take


class RepEntry(_Strict):
    id: str  # the CRM's user / owner id
    crm: Literal["salesforce", "hubspot"]
    name: str
    email: str
    team: str | None = None
    role: Literal["rep", "manager", "vp"] = "rep"
    seniority: int = 1
    capacity: int = 50
    active: bool = True
    pto: list[Pto] = Field(default_factory=list)


class Directory(_Strict):
    teams: list[TeamEntry] = Field(default_factory=list)
    reps: list[RepEntry] = Field(default_factory=list)


def load_directory(path: Path) -> Directory:
    try:
        return Directory.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def pto_range(day_from: date, day_to: date, tz: str) -> tuple[datetime, datetime]:
    """Whole local days, from midnight of the first to midnight after the last."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day_from, time(0), tzinfo=zone)
    end = datetime.combine(day_to + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def apply_directory(session: Session, directory: Directory, policy: Policy) -> None:
    teams = {team.id: team for team in directory.teams}
    problems = [f"rep {rep.id}: unknown team {rep.team!r}" for rep in directory.reps
                if rep.team and rep.team not in teams]
    problems += [f"team {team.id}: market {team.market!r} is not in the policy" for team in directory.teams
                 if team.market not in policy.markets]
    if problems:
        raise ValueError("; ".join(problems))
    for team in directory.teams:
        session.merge(Team(id=team.id, name=team.name, market=team.market, manager_id=team.manager,
                           slack_channel=team.slack_channel, ops_queue_id=team.ops_queue))
    session.flush()
    for rep in directory.reps:
        session.merge(Rep(id=rep.id, crm=rep.crm, name=rep.name, email=rep.email, team_id=rep.team,
                          role=rep.role, seniority=rep.seniority, capacity=rep.capacity, active=rep.active))
    session.flush()
    for rep in directory.reps:
        session.execute(delete(RepPto).where(RepPto.rep_id == rep.id))
        tz = policy.markets[teams[rep.team].market].tz if rep.team else "UTC"
        for pto in rep.pto:
            start, end = pto_range(pto.start, pto.end, tz)
            session.add(RepPto(rep_id=rep.id, starts_at=start, ends_at=end))
