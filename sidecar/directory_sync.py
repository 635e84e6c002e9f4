"""Directory sync from a CRM's user list: who exists, who is active, names and emails.

The CRM is the source of truth for what it knows (active, name, email); the directory file for what
it does not (team, role, capacity, seniority). A user the file does not name gets no team, so routing
never hands them a lead until an admin places them; the result lists them for that admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.directory import Directory, RepEntry
from sidecar.engine.routing import open_leads
from sidecar.ports import DirectoryUser
from sidecar.store.models import Rep, Team


@dataclass
class SyncResult:
    crm: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)  # were active, are not any more
    unplaced: list[str] = field(default_factory=list)  # active CRM users the directory file does not name
    warnings: list[str] = field(default_factory=list)


def sync_users(session: Session, crm: str, users: list[DirectoryUser], directory: Directory | None) -> SyncResult:
    result = SyncResult(crm)
    entries = {rep.id: rep for rep in directory.reps} if directory is not None else {}
    teams = set(session.scalars(select(Team.id)))
    for user in sorted(users, key=lambda u: u.id):
        entry = entries.get(user.id)
        if entry is not None and entry.crm != crm:
            result.warnings.append(f"directory lists {user.id} as a {entry.crm} user, but {crm} reports it; "
                                   f"fix `crm` of that rep in the directory file")
            entry = None
        row = session.get(Rep, user.id)
        was_active = row is not None and row.active
        values = _values(user, entry, row, directory is not None, teams, result)
        if row is None:
            session.add(Rep(id=user.id, crm=crm, **values))
            result.created.append(user.id)
        else:
            changed = any(getattr(row, name) != value for name, value in values.items())
            for name, value in values.items():
                setattr(row, name, value)
            if changed:
                result.updated.append(user.id)
        if was_active and not values["active"]:
            result.deactivated.append(user.id)
    _deactivate_vanished(session, crm, {user.id for user in users}, result)
    session.flush()
    _warn_open_leads(session, result)
    return result


def _values(user: DirectoryUser, entry: RepEntry | None, row: Rep | None, have_file: bool,
            teams: set[str], result: SyncResult) -> dict[str, Any]:
    # CRM wins for active, but a file entry saying `active: false` still keeps someone out of routing
    # (e.g. a CRM user who never takes leads): either source can stop routing, neither can force it.
    values: dict[str, Any] = {
        "name": user.name or (entry.name if entry else row.name if row else user.id),
        "email": user.email or (entry.email if entry else row.email if row else ""),
        "active": user.active and (entry.active if entry else True),
    }
    if entry is not None:
        team = entry.team
        if team is not None and team not in teams:
            result.warnings.append(f"{user.id}: team {team!r} from the directory file is not applied yet; "
                                   "run `sidecar directory apply` first")
            team = None
        values.update(team_id=team, role=entry.role, seniority=entry.seniority, capacity=entry.capacity)
    elif have_file or row is None:
        # Unknown to the file: no team means never routed; without a file, an existing row keeps its team.
        values["team_id"] = None
        if user.active:
            result.unplaced.append(user.id)
            hint = f" (the CRM puts them in {user.team!r})" if user.team else ""
            result.warnings.append(f"{user.id} {user.name} <{user.email}> is not in the directory file{hint}; "
                                   "add them under reps with a team so routing can use them")
    return values


def _deactivate_vanished(session: Session, crm: str, seen: set[str], result: SyncResult) -> None:
    """A user the CRM no longer lists at all (deleted, not just deactivated) cannot take leads either."""
    if not seen:
        # An empty list is far likelier a reader or permission problem than an empty org.
        result.warnings.append(f"{crm} returned no users; nobody was deactivated")
        return
    for rep in session.scalars(select(Rep).where(Rep.crm == crm, Rep.active.is_(True), Rep.id.not_in(seen))):
        rep.active = False
        result.deactivated.append(rep.id)
        result.warnings.append(f"{rep.id} {rep.name} is no longer listed by {crm}; marked inactive")


def _warn_open_leads(session: Session, result: SyncResult) -> None:
    # Their open leads stay with them in the CRM; the SLA ladder will move them, but a manager may
    # want to do it now rather than wait for the breach.
    loads = open_leads(session, result.deactivated)
    for rep_id, count in sorted(loads.items()):
        result.warnings.append(f"{rep_id} was deactivated with {count} open lead(s); the ladder will "
                               "reassign them at the breach, or reassign them now")
