"""The JSON API under /api (schema at /openapi.json): leads, clocks, audit, queues, outcomes, revert,
compliance decisions, PTO, policy versions (signals: sidecar.web.signals). `Authorization: Bearer <token>`
of a dashboard user; 401 without a known token, 403 when the user's role may not do it. The token is
checked before any body is read.
"""


from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.directory import add_pto
from sidecar.engine.patterns.compliance_decisions import ComplianceError, decide
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.revert import RevertError, revert_reassignment
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, Rep, RepPto, Team
from sidecar.web.auth import Role, User, find_user
from sidecar.web.dashboard import providers, rules
from sidecar.web.dashboard.ladder import ladders

_BEARER = HTTPBearer(auto_error=False)


class RevertBody(BaseModel):
    reason: str = Field(default="", max_length=2000)


class DecisionBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)  # kept in the audit; a decision needs one


class PtoBody(BaseModel):
    rep_id: str = Field(min_length=1, max_length=64)
    start: date = Field(alias="from")
    end: date = Field(alias="to")


def _lead_json(lead: Lead) -> dict[str, Any]:
    return {"crm": lead.crm, "crm_id": lead.crm_id, "name": lead.name, "company": lead.company,
            "state": lead.state, "market": lead.market, "source": lead.source, "intent": lead.intent,
            "owner_id": lead.owner_id, "team_id": lead.team_id,
            "last_progress_at": lead.last_progress_at.isoformat() if lead.last_progress_at else None}


def _clock_json(clock: Clock, breached: bool) -> dict[str, Any]:
    return {"id": clock.id, "lead_id": clock.lead_id, "kind": clock.kind, "state": clock.state,
            "status": clock.status, "rule_id": clock.rule_id, "policy_version": clock.policy_version,
            "window_s": clock.window_s, "started_at": clock.started_at.isoformat(), "steps_fired": clock.steps_fired,
            "next_due_at": clock.next_due_at.isoformat() if clock.next_due_at else None, "breached": breached,
            "closed_at": clock.closed_at.isoformat() if clock.closed_at else None, "close_reason": clock.close_reason}


def api_router(sessions: sessionmaker[Session], ctx: EngineContext, users: dict[str, User],
               clock: Callable[[], datetime]) -> APIRouter:
    def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> User:
        user = find_user(users, credentials.credentials) if credentials is not None else None
        if user is None:
            raise HTTPException(401, "missing or unknown token", headers={"WWW-Authenticate": "Bearer"})
        return user

    def manager(user: Annotated[User, Depends(caller)]) -> User:
        if user.role < Role.MANAGER:
            raise HTTPException(403, f"{user.name} is a {user.role.name.lower()}: this needs a manager or admin")
        return user

    router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(caller)])

    @router.get("/leads")
    def leads(state: str | None = None, owner: str | None = None, team: str | None = None,
              overdue: bool | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        with transaction(sessions) as session:
            query = select(Lead).order_by(Lead.id)
            for column, value in ((Lead.state, state), (Lead.owner_id, owner), (Lead.team_id, team)):
                if value is not None:
                    query = query.where(column == value)
            if overdue is not None:
                facts = ladders(session, ctx.book)
                late = {c.lead_id for c in session.scalars(select(Clock).where(Clock.status != "closed"))
                        if facts.breached(c)}
                query = query.where(Lead.id.in_(late) if overdue else Lead.id.not_in(late))
            rows = list(session.scalars(query.offset(offset).limit(limit)))
            return {"leads": [_lead_json(lead) for lead in rows], "offset": offset, "limit": limit}

    @router.get("/clocks")
    def clocks(status: str | None = None, kind: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        with transaction(sessions) as session:
            facts = ladders(session, ctx.book)
            query = select(Clock).order_by(Clock.id)
            if status is not None:
                query = query.where(Clock.status == status)
            if kind is not None:
                query = query.where(Clock.kind == kind)
            rows = session.scalars(query.offset(offset).limit(limit))
            return {"clocks": [_clock_json(c, facts.breached(c)) for c in rows], "offset": offset, "limit": limit}

    @router.get("/audit")
    def audit_rows(lead: str | None = None, pattern: str | None = None, action: str | None = None,
                   rule_id: str | None = None, since: datetime | None = None,
                   page: Annotated[int, Query(ge=1)] = 1,
                   per_page: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        if since is not None and since.tzinfo is None:
            raise HTTPException(422, "since needs a UTC offset, e.g. 2026-11-24T14:00:00Z")
        with transaction(sessions) as session:
            query = select(AuditRow, Lead.crm_id).outerjoin(Lead, Lead.id == AuditRow.lead_id).order_by(AuditRow.id)
            for column, value in ((Lead.crm_id, lead), (AuditRow.pattern, pattern), (AuditRow.action, action),
                                  (AuditRow.rule_id, rule_id)):
                if value is not None:
                    query = query.where(column == value)
            if since is not None:
                query = query.where(AuditRow.at >= since)
            rows = session.execute(query.offset((page - 1) * per_page).limit(per_page)).all()
            return {"page": page, "per_page": per_page, "rows": [
                {"id": row.id, "at": row.at.isoformat(), "lead": crm_id, "crm": row.crm, "kind": row.kind,
                 "pattern": row.pattern, "action": row.action, "to_owner": row.to_owner, "rule_id": row.rule_id,
                 "policy_version": row.policy_version, "actor": row.actor, "details": row.details}
                for row, crm_id in rows]}

    @router.get("/queues")
    def queues() -> dict[str, Any]:
        with transaction(sessions) as session:
            return {"queues": [asdict(queue) for queue in providers.queues(session, clock())]}

    @router.get("/outcomes")
    def outcomes() -> dict[str, Any]:
        with transaction(sessions) as session:
            rows = providers.outcomes(session, clock())
        return {"outcomes": [asdict(row) for row in rows], "empty": providers.OUTCOME_EMPTY if not rows else None}

    @router.post("/leads/{crm}/{crm_id}/revert")
    def revert(crm: str, crm_id: str, body: RevertBody, user: Annotated[User, Depends(manager)]) -> dict[str, Any]:
        try:
            with transaction(sessions) as session:
                row = revert_reassignment(session, ctx, crm, crm_id, f"api:{user.name}", body.reason, clock())
                return {"audit_id": row.id, "from_owner": row.details["from_owner"],
                        "to_owner": row.details["to_owner"]}
        except RevertError as err:
            raise HTTPException(409, str(err)) from None

    @router.post("/leads/{crm}/{crm_id}/compliance/{decision}")
    def compliance_decision(crm: str, crm_id: str, decision: Literal["clear", "reject"], body: DecisionBody,
                            user: Annotated[User, Depends(manager)]) -> dict[str, Any]:
        """Clear a lead held for compliance review (back to NEW) or reject it (disqualified)."""
        with transaction(sessions) as session:
            if session.scalars(select(Lead.id).where(Lead.crm == crm, Lead.crm_id == crm_id)).first() is None:
                raise HTTPException(404, f"no {crm} lead {crm_id} is known to the sidecar")
            try:
                row = decide(session, ctx, crm, crm_id, decision, f"api:{user.name}", body.reason, clock())
            except ComplianceError as err:
                raise HTTPException(409, str(err)) from None
            return {"audit_id": row.id, "kind": row.kind, "crm_status": row.details.get("crm_status"),
                    "time_in_review_s": row.details["time_in_review_s"]}

    @router.get("/pto")
    def pto() -> dict[str, Any]:
        with transaction(sessions) as session:
            rows = session.scalars(select(RepPto).where(RepPto.ends_at > clock()).order_by(RepPto.starts_at))
            return {"pto": [{"rep_id": r.rep_id, "starts_at": r.starts_at.isoformat(),
                             "ends_at": r.ends_at.isoformat()} for r in rows]}

    @router.post("/pto")
    def record_pto(body: PtoBody, user: Annotated[User, Depends(manager)]) -> dict[str, Any]:
        with transaction(sessions) as session:
            rep = session.get(Rep, body.rep_id)
            team = session.get(Team, rep.team_id) if rep is not None and rep.team_id else None
            tz = ctx.book.market(ctx.book.active(session)[1], team.market if team else None)[1].tz
            try:
                row = add_pto(session, body.rep_id, body.start, body.end, tz)
            except ValueError as err:
                raise HTTPException(422, str(err)) from None
            audit.record(session, at=clock(), kind="pto_recorded", actor=f"api:{user.name}",
                         details={"rep_id": body.rep_id, "from": body.start.isoformat(), "to": body.end.isoformat()})
            return {"rep_id": row.rep_id, "starts_at": row.starts_at.isoformat(), "ends_at": row.ends_at.isoformat()}

    @router.get("/policy/versions")
    def policy_versions() -> dict[str, Any]:
        with transaction(sessions) as session:
            return {"versions": [asdict(v) for v in rules.versions(session, ctx.book)]}

    return router
