"""The append-only audit log: every decision names its rule and policy version."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from sidecar.store import bulk, ids
from sidecar.store.models import AuditRow, Lead, Rep, Team


class Pattern(StrEnum):
    """Which engine pattern decided a row (typed: reports and revert never read the admin's `kind`)."""

    SLA = "sla"
    STUCK = "stuck"
    HIGH_VALUE = "high_value"
    COMPLIANCE = "compliance"
    CHURN = "churn"
    FIRST_RESPONSE = "first_response"
    ASSIGNMENT = "assignment"
    REVERT = "revert"
    OUTCOME = "outcome"


class StepAction(StrEnum):
    """The most consequential thing a decision did; with an owner change, `AuditRow.to_owner` says to whom."""

    NOTIFY = "notify"
    NOTE = "note"
    TASK = "task"
    HOLD = "hold"
    QUEUE = "queue"  # the owner became the team's ops queue
    ASSIGN = "assign"  # an unowned lead got its first owner
    REASSIGN = "reassign"  # an owned lead was given to another rep: revertable
    REVERT = "revert"  # a reassignment was undone
    REVIEW = "review"  # put in a review queue (ops review, compliance); the owner is unchanged
    UPDATE = "update"  # the lead's CRM status or tags were changed (compliance hold, clear, reject)
    TAG = "tag"  # the lead was tagged in the CRM (churn risk)


EXPORT_KEYS = ("at", "lead_id", "lead_name", "crm", "kind", "pattern", "action", "rule_id", "policy_version",
               "owner_id", "owner_name", "team_id", "team_name", "to_owner", "to_owner_name", "elapsed_business_s",
               "window_s", "actor", "details")


# Per session (i.e. per transaction of the tick): step keys known not to be in the audit yet, and the
# decisions recorded new in it (audit id -> step key). They spare a burst of steps one look-up query
# per audit row and per effect; the unique keys in the database still guard against any double.
_ABSENT, _FRESH = "sidecar_absent_step_keys", "sidecar_fresh_decisions"


def note_absent(session: Session, candidates: set[str]) -> None:
    """Look up which of `candidates` are already recorded (one query); `record` trusts the rest to be new."""
    if not candidates:
        return
    present = set(session.scalars(select(AuditRow.step_key).where(AuditRow.step_key.in_(candidates))))
    session.info[_ABSENT] = candidates - present


def note_absent_key(session: Session, step_key: str) -> None:
    """The caller has just looked `step_key` up and not found it: `record` need not look again."""
    session.info.setdefault(_ABSENT, set()).add(step_key)


def is_fresh_effect(session: Session, audit_id: int | None, key: str) -> bool:
    """True when `key` names an effect of a decision recorded new in this transaction: effect keys
    start with their decision's key, and a decision and its effects are written together, so no
    such effect can exist yet."""
    decision = session.info.get(_FRESH, {}).get(audit_id) if audit_id is not None else None
    return decision is not None and key.startswith(decision + ":")


def record(session: Session, *, at: datetime, kind: str, lead: Lead | None = None,
           rule_id: str | None = None, policy_version: str | None = None,
           elapsed_business_s: float | None = None, window_s: int | None = None,
           actor: str = "system", step_key: str | None = None,
           details: dict[str, Any] | None = None, pattern: Pattern | None = None,
           action: StepAction | None = None, to_owner: str | None = None) -> AuditRow:
    """Append one row. A `step_key` already present returns that row: a re-run never doubles it."""
    absent: set[str] = session.info.get(_ABSENT, set())
    if step_key is not None and step_key in absent:
        absent.discard(step_key)  # recorded now: from here on it is present
        new = True
    elif step_key is not None:
        existing = session.scalars(select(AuditRow).where(AuditRow.step_key == step_key)).first()
        if existing is not None:
            return existing
        new = True
    else:
        new = False
    if lead is not None:
        # Every row of a lead says which intent tier applied and which rule chose it (seed 002).
        details = {**(details or {}), "intent_tier": lead.intent, "intent_rule": lead.intent_rule}
    values = {"at": at, "kind": kind, "lead_id": lead.id if lead else None, "crm": lead.crm if lead else None,
              "owner_id": lead.owner_id if lead else None, "rule_id": rule_id, "policy_version": policy_version,
              "elapsed_business_s": elapsed_business_s, "window_s": window_s, "actor": actor,
              "step_key": step_key, "details": details or {},
              "pattern": pattern.value if pattern else None, "action": action.value if action else None,
              "to_owner": to_owner}
    reserved = ids.take(session, AuditRow)  # reserved by the tick, else None
    if reserved is not None and bulk.is_open(session):
        row = bulk.new_row(session, AuditRow, {"id": reserved, **values})  # inserted with its batch
    else:
        row = AuditRow(id=reserved, **values)
        session.add(row)
        if row.id is None:
            session.flush()  # no id reserved: the insert gives it
    if new:
        session.info.setdefault(_FRESH, {})[row.id] = step_key
    return row


def action_counts(session: Session) -> dict[str, int]:
    """How many decisions did what (e.g. "reassign": 12), whatever the admin named their kinds."""
    rows = session.execute(select(AuditRow.action, func.count()).where(AuditRow.action.is_not(None))
                           .group_by(AuditRow.action)).all()
    return {str(action): int(n) for action, n in rows}


def pattern_counts(session: Session) -> dict[str, int]:
    """How many audit rows each pattern wrote (e.g. "stuck": 4), by the typed `pattern` column."""
    rows = session.execute(select(AuditRow.pattern, func.count()).where(AuditRow.pattern.is_not(None))
                           .group_by(AuditRow.pattern)).all()
    return {str(pattern): int(n) for pattern, n in rows}


def _as_dict(row: AuditRow, lead: Lead | None, owner: Rep | None, team: Team | None,
             to_owner: Rep | None) -> dict[str, Any]:
    return {
        "at": row.at.isoformat(), "lead_id": lead.crm_id if lead else None, "lead_name": lead.name if lead else None,
        "crm": row.crm, "kind": row.kind, "pattern": row.pattern, "action": row.action, "rule_id": row.rule_id,
        "policy_version": row.policy_version, "owner_id": row.owner_id, "owner_name": owner.name if owner else None,
        "team_id": team.id if team else None, "team_name": team.name if team else None,
        "to_owner": row.to_owner, "to_owner_name": to_owner.name if to_owner else None,
        "elapsed_business_s": row.elapsed_business_s, "window_s": row.window_s,
        "actor": row.actor, "details": row.details,
    }


def export(session: Session, fmt: str, lead_crm_id: str | None = None,
           since: datetime | None = None) -> Iterator[str]:
    """Audit rows as JSON lines or CSV, oldest first; `lead_id` is the CRM's id of the lead. Names
    stand beside the ids: the lead's, its owner's at the time of the row, that owner's team (else
    the lead's team) and the new owner's of an owner change, so a reader needs no lookup. The typed
    `pattern` and `action` say what a row did whatever the admin named its `kind`."""
    new_owner = aliased(Rep)
    query = (select(AuditRow, Lead, Rep, Team, new_owner).outerjoin(Lead, Lead.id == AuditRow.lead_id)
             .outerjoin(Rep, Rep.id == AuditRow.owner_id)
             .outerjoin(new_owner, new_owner.id == AuditRow.to_owner)
             .outerjoin(Team, Team.id == func.coalesce(Rep.team_id, Lead.team_id))
             .order_by(AuditRow.at, AuditRow.id))
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if lead_crm_id is not None:
        query = query.where(Lead.crm_id == lead_crm_id)
    rows = session.execute(query).all()
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_KEYS)
        writer.writeheader()
        yield buffer.getvalue()
        for row, lead, owner, team, to_owner in rows:
            buffer.seek(0)
            buffer.truncate()
            data = _as_dict(row, lead, owner, team, to_owner)
            writer.writerow({**data, "details": json.dumps(data["details"], sort_keys=True)})
            yield buffer.getvalue()
        return
    for row, lead, owner, team, to_owner in rows:
        yield json.dumps(_as_dict(row, lead, owner, team, to_owner), sort_keys=True) + "\n"
