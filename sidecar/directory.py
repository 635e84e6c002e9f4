"""The sales directory: teams, reps, managers, capacity and PTO.

CRM user lists say who exists; what a CRM does not know (team boundaries as the sidecar must
respect them, capacity, seniority, Slack channels, PTO) comes from `config/directory.yaml`.
Applying a directory upserts teams and reps and replaces the PTO ranges it names. Like the policy,
a directory has a content-hash version so that an audit row can say which directory was in force.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sidecar.config_yaml import ConfigError, Lines, did_you_mean, read_yaml
from sidecar.engine.assignment import configured
from sidecar.engine.policies import PolicyBook
from sidecar.engine.routing import availability, on_pto, open_leads
from sidecar.policy.markets import Market
from sidecar.policy.model import Policy
from sidecar.store.models import Rep, RepPto, Team

EXAMPLE = "config/directory.example.yaml"


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
    # The team's chat system: its people's messages and its channel posts go through Slack or
    # Microsoft Teams (the org may mix). On Teams, `teams_workflow_env` names the environment
    # variable (set in .env) holding the URL of the team channel's Workflows webhook: the URL
    # carries a signature (sig=...), so it never goes into this file, the database or the logs.
    chat: Literal["slack", "teams"] = "slack"
    teams_workflow_env: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,99}$")] | None = None
    ops_queue: str | None = None  # CRM queue id that takes leads nobody can take


class RepEntry(_Strict):
    id: str  # the CRM's user / owner id
    crm: Literal["salesforce", "hubspot"]
    name: str
    email: str
    team: str | None = None
    role: Literal["rep", "manager", "vp"] = "rep"
    seniority: int = 1
    # Checked in `directory_problems`, not by a Field bound, so a bad capacity is reported together
    # with the cross-reference mistakes instead of hiding them.
    capacity: int = 50
    active: bool = True
    hours: dict[str, list[str]] | None = None  # own shift, like a market's hours (else the team market's)
    pto: list[Pto] = Field(default_factory=list)


class Directory(_Strict):
    teams: list[TeamEntry] = Field(default_factory=list)
    reps: list[RepEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class DirectoryProblem:
    key: str  # e.g. reps[3].capacity
    message: str
    fix: str = ""
    line: int | None = None  # in the directory file, when it is known

    def __str__(self) -> str:
        where = f"{self.line}: " if self.line else ""
        return f"{where}{self.key}: {self.message}" + (f" (fix: {self.fix})" if self.fix else "")


class DirectoryError(ValueError):
    """Every problem of a directory at once; a ValueError so older callers keep catching it."""

    def __init__(self, problems: list[DirectoryProblem], file: str = "directory") -> None:
        self.problems, self.file = problems, file
        super().__init__("\n".join(f"{file}:{problem}" if problem.line else f"{file}: {problem}"
                                   for problem in problems))

    def located(self, lines: Lines) -> DirectoryError:
        """The same problems with the line of each key in `lines`' file, sorted by line."""
        placed = [replace(p, line=p.line or lines.line_of_key(p.key)) for p in self.problems]
        return DirectoryError(sorted(placed, key=lambda p: p.line or 0), lines.file)


def _key(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _shape_problem(error: Any) -> DirectoryProblem:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and loc:
        # the model the unknown key sits in: top level, teams[i], reps[i] or reps[i].pto[j]
        owner: type[BaseModel] = (Directory if len(loc) == 1 else TeamEntry if loc[0] == "teams"
                                  else RepEntry if len(loc) == 3 else Pto)
        names = {f.alias or name for name, f in owner.model_fields.items()}
        return DirectoryProblem(_key(loc), f"unknown key {loc[-1]!r}" + did_you_mean(str(loc[-1]), names),
                                f"remove it or fix its spelling (see {EXAMPLE})")
    message = "required key is missing" if error["type"] == "missing" else str(error["msg"])
    return DirectoryProblem(_key(loc), message, f"see {EXAMPLE} for the expected keys and values")


def parse_directory(raw: Any, file: str = "directory", lines: Lines | None = None) -> Directory:
    duplicates = [DirectoryProblem(p.key, p.message, p.fix, p.line) for p in (lines.duplicates if lines else [])]
    try:
        directory = Directory.model_validate(raw or {})
    except ValidationError as exc:
        error = DirectoryError(duplicates + [_shape_problem(e) for e in exc.errors(include_url=False)], file)
        raise (error.located(lines) if lines else error) from exc
    if duplicates:
        raise DirectoryError(duplicates, file)
    return directory


def read_directory(path: Path) -> tuple[Directory, Lines]:
    """The directory and the line of each of its keys (for problems found later, e.g. on apply)."""
    try:
        raw, lines = read_yaml(path, EXAMPLE, keep_going=True)
    except ConfigError as exc:
        raise DirectoryError([DirectoryProblem(p.key, p.message, p.fix, p.line) for p in exc.problems],
                             str(path)) from exc
    return parse_directory(raw, str(path), lines), lines


def load_directory(path: Path) -> Directory:
    return read_directory(path)[0]


def directory_problems(directory: Directory, policy: Policy) -> list[DirectoryProblem]:
    """Cross-reference and range checks; every problem with its key path and a fix."""
    out: list[DirectoryProblem] = []
    teams = {team.id for team in directory.teams}
    team_of = {rep.id: rep.team for rep in directory.reps}
    seen: dict[str, int] = {}
    for i, team in enumerate(directory.teams):
        if team.market not in policy.markets:
            out.append(DirectoryProblem(f"teams[{i}].market", f"team {team.id}: market {team.market!r} is not "
                                        "in the policy", f"use one of {sorted(policy.markets)} or add the market"))
        if team.manager is not None and team_of.get(team.manager) != team.id:
            where = "is not listed under reps" if team.manager not in team_of else \
                f"is a rep of team {team_of[team.manager]!r}"
            out.append(DirectoryProblem(f"teams[{i}].manager", f"team {team.id}: manager {team.manager} {where}",
                                        f"list the manager under reps with `team: {team.id}`"))
        if team.chat == "teams" and not team.teams_workflow_env:
            out.append(DirectoryProblem(f"teams[{i}].teams_workflow_env", f"team {team.id} is on Teams but names "
                                        "no workflow for its channel posts",
                                        "set teams_workflow_env: to the name of the .env variable holding the "
                                        "channel workflow's URL (see README, Microsoft Teams)"))
    for i, rep in enumerate(directory.reps):
        if rep.id in seen:
            out.append(DirectoryProblem(f"reps[{i}].id", f"rep id {rep.id} is listed twice (first at "
                                        f"reps[{seen[rep.id]}])", "keep one entry per CRM user id"))
        seen.setdefault(rep.id, i)
        if rep.team is not None and rep.team not in teams:
            out.append(DirectoryProblem(f"reps[{i}].team", f"rep {rep.id}: unknown team {rep.team!r}",
                                        f"use one of {sorted(teams)} or add the team under teams"))
        if rep.capacity < 0:
            out.append(DirectoryProblem(f"reps[{i}].capacity", f"rep {rep.id}: capacity {rep.capacity} is negative",
                                        "use 0 (takes no new leads) or more"))
        for j, pto in enumerate(rep.pto):
            if pto.start > pto.end:
                out.append(DirectoryProblem(f"reps[{i}].pto[{j}]", f"rep {rep.id}: PTO from {pto.start} is after "
                                            f"to {pto.end}", "swap the dates (both days are inclusive)"))
        if rep.hours is not None:
            out += _hours_problems(f"reps[{i}].hours", rep)
    # A team that initial assignment routes to must exist, or its leads would wait unowned.
    assignment = configured(policy)
    for rule in assignment.rules if assignment.enabled else []:
        if rule.team not in teams:
            out.append(DirectoryProblem("teams", f"policy assignment rule {rule.id} routes to team {rule.team!r}, "
                                        "which this directory does not define",
                                        "add the team here or change the rule in the policy"))
    return out


def _hours_problems(key: str, rep: RepEntry) -> list[DirectoryProblem]:
    try:
        Market(tz="UTC", hours=rep.hours or {}).calendar()
    except ValueError as exc:
        return [DirectoryProblem(key, f"rep {rep.id}: {exc}", 'write hours like {mon-fri: ["09:00-17:00"]}')]
    return []


def directory_version(directory: Directory) -> str:
    """Short hash of the canonical content: order of entries and YAML formatting do not count."""
    content = directory.model_dump(mode="json", by_alias=True)
    for team in content["teams"]:  # a team on Slack hashes as before the chat choice existed
        if team["chat"] == "slack" and team["teams_workflow_env"] is None:
            del team["chat"], team["teams_workflow_env"]
    content["teams"] = sorted(content["teams"], key=lambda team: team["id"])
    for rep in content["reps"]:
        rep["pto"] = sorted(rep["pto"], key=lambda pto: (pto["from"], pto["to"]))
    content["reps"] = sorted(content["reps"], key=lambda rep: (rep["id"], rep["crm"]))
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def pto_range(day_from: date, day_to: date, tz: str) -> tuple[datetime, datetime]:
    """Whole local days, from midnight of the first to midnight after the last."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day_from, time(0), tzinfo=zone)
    end = datetime.combine(day_to + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def _zone(directory: Directory, policy: Policy, rep: RepEntry) -> str:
    """The rep's team market's time zone (UTC without one; an unknown team is reported elsewhere)."""
    team = next((team for team in directory.teams if team.id == rep.team), None)
    market = policy.markets.get(team.market) if team is not None else None
    return market.tz if market is not None else "UTC"


def unlisted_pto(session: Session, directory: Directory, policy: Policy,
                 after: datetime | None = None) -> list[DirectoryProblem]:
    """PTO in the store (ending after `after`) that applying the file would erase: ranges entered
    with `sidecar directory pto`, or removed from the file since the last apply. The store cannot
    tell the two apart, so applying refuses instead of guessing (`replace_pto` drops them)."""
    out: list[DirectoryProblem] = []
    for i, rep in enumerate(directory.reps):
        zone = ZoneInfo(_zone(directory, policy, rep))
        listed = {pto_range(pto.start, pto.end, zone.key) for pto in rep.pto}
        stored = session.scalars(select(RepPto).where(RepPto.rep_id == rep.id).order_by(RepPto.starts_at))
        for row in stored:
            if (row.starts_at, row.ends_at) in listed or (after is not None and row.ends_at <= after):
                continue
            first = row.starts_at.astimezone(zone).date()
            last = (row.ends_at.astimezone(zone) - timedelta(days=1)).date()
            out.append(DirectoryProblem(
                f"reps[{i}].pto", f"rep {rep.id} is away {first}..{last} (entered with `sidecar directory pto`, "
                "or removed from this file since the last apply); applying would erase that PTO",
                f"add `- {{from: {first}, to: {last}}}` under this rep's pto, or rerun with --replace-pto "
                "to drop it"))
    return out


def apply_directory(session: Session, directory: Directory, policy: Policy, *, now: datetime | None = None,
                    replace_pto: bool = False) -> str:
    """Upsert teams and reps, set the PTO of the reps named to what the file lists; return the version.

    PTO the file does not list but that is still ahead (after `now`) is never dropped silently: the
    apply is refused with one problem per range unless `replace_pto` says to drop them."""
    problems = directory_problems(directory, policy)
    if not replace_pto:
        problems += unlisted_pto(session, directory, policy, now)
    if problems:
        raise DirectoryError(problems)
    teams = {team.id: team for team in directory.teams}
    for team in directory.teams:
        session.merge(Team(id=team.id, name=team.name, market=team.market, manager_id=team.manager,
                           slack_channel=team.slack_channel, chat=team.chat,
                           teams_workflow_env=team.teams_workflow_env, ops_queue_id=team.ops_queue))
    session.flush()
    for rep in directory.reps:
        session.merge(Rep(id=rep.id, crm=rep.crm, name=rep.name, email=rep.email, team_id=rep.team, role=rep.role,
                          seniority=rep.seniority, capacity=rep.capacity, active=rep.active, hours=rep.hours))
    session.flush()
    for rep in directory.reps:
        session.execute(delete(RepPto).where(RepPto.rep_id == rep.id))
        tz = policy.markets[teams[rep.team].market].tz if rep.team else "UTC"
        for pto in rep.pto:
            start, end = pto_range(pto.start, pto.end, tz)
            session.add(RepPto(rep_id=rep.id, starts_at=start, ends_at=end))
    return directory_version(directory)


def add_pto(session: Session, rep_id: str, start: date, end: date, tz: str) -> RepPto:
    """Record an absence outside the file (e.g. a sick day); the same range twice is one row."""
    if session.get(Rep, rep_id) is None:
        raise ValueError(f"unknown rep {rep_id}; sync users or apply the directory first")
    if start > end:
        raise ValueError(f"PTO from {start} is after to {end}; both days are inclusive")
    starts_at, ends_at = pto_range(start, end, tz)
    existing = session.scalars(select(RepPto).where(
        RepPto.rep_id == rep_id, RepPto.starts_at == starts_at, RepPto.ends_at == ends_at)).first()
    if existing is not None:
        return existing
    row = RepPto(rep_id=rep_id, starts_at=starts_at, ends_at=ends_at)
    session.add(row)
    session.flush()
    return row


def show_directory(session: Session, book: PolicyBook, version: str, policy: Policy,
                   at: datetime) -> list[dict[str, Any]]:
    """One row per rep for a table; `available` comes from routing's own availability check."""
    reps = list(session.scalars(select(Rep).order_by(Rep.team_id, Rep.id)))
    ids = [rep.id for rep in reps]
    loads, away = open_leads(session, ids), on_pto(session, ids, at)
    reasons: dict[str, str | None] = {}
    for team in session.scalars(select(Team)):
        members = [rep for rep in reps if rep.team_id == team.id]
        reasons.update(availability(session, book, version, policy, team, members, at))
    rows = []
    for rep in reps:
        # Routing only ever picks role `rep` of a team; say so rather than show a manager as free.
        why = "no team" if rep.team_id is None else (
            f"role {rep.role} is not routed" if rep.role != "rep" else reasons.get(rep.id))
        rows.append({"rep": rep.id, "name": rep.name, "crm": rep.crm, "team": rep.team_id, "role": rep.role,
                     "capacity": rep.capacity, "open_leads": loads.get(rep.id, 0), "on_pto": rep.id in away,
                     "available": why is None, "why_not": why or ""})
    return rows
