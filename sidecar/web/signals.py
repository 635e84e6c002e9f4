"""`POST /api/signals`: churn-risk signals from product analytics or support tooling.

Body (JSON): `{"signal_id": "...", "type": "usage_drop", "crm": "hubspot", "lead_id": "...",
"account": "...", "occurred_at": "2026-11-24T14:00:00Z"}`; `type` is one of the policy's
`churn.flags`; give `crm` + `lead_id`, or `account` (a company name: the account's newest lead is
the one tagged and tasked). Idempotent by `signal_id`: a repeat answers 200 with `"duplicate": true`
and changes nothing.

Auth: `Authorization: Bearer <SIDECAR_SIGNALS_TOKEN>` (or the admin token), compared in constant
time and checked before the body is read: 401 without a token, 403 with a wrong one. 400 for a body
that is not valid JSON, misses a field or names an unknown type; 404 when no such lead is known.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from sidecar.domain import Crm
from sidecar.engine.patterns.churn import SignalIn, account_key, raise_signal
from sidecar.engine.patterns.shared import EngineContext
from sidecar.store.db import transaction
from sidecar.store.models import Lead


class SignalBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    signal_id: str = Field(min_length=1, max_length=150)
    type: str = Field(min_length=1, max_length=60)
    crm: Crm | None = None
    lead_id: str | None = Field(default=None, min_length=1, max_length=64)
    account: str | None = Field(default=None, min_length=1, max_length=300)
    occurred_at: AwareDatetime | None = None


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status,
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def signals_router(sessions: sessionmaker[Session], ctx: EngineContext, token: str,
                   clock: Callable[[], datetime]) -> APIRouter:
    if not token:
        raise ValueError("the signals API needs a non-empty token; leave it unmounted otherwise")
    expected = token.encode()
    router = APIRouter()

    @router.post("/api/signals")
    async def receive(request: Request) -> JSONResponse:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return _error(401, "missing bearer token")
        if not hmac.compare_digest(given.strip().encode(), expected):
            return _error(403, "wrong token")
        raw = await request.body()
        try:
            body = SignalBody.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            return _error(400, f"bad signal: {problems}")
        if body.lead_id is None and body.account is None:
            return _error(400, "bad signal: give crm and lead_id, or account")
        if body.lead_id is not None and body.crm is None:
            return _error(400, "bad signal: lead_id needs crm (salesforce or hubspot)")
        return await run_in_threadpool(_record, sessions, ctx, body, clock())

    return router


def _record(sessions: sessionmaker[Session], ctx: EngineContext, body: SignalBody, now: datetime) -> JSONResponse:
    try:
        with transaction(sessions) as session:
            _version, policy = ctx.book.active(session)
            known = policy.churn.flags if policy.churn else []
            if body.type not in known:
                return _error(400, f"unknown signal type {body.type!r}; known: {', '.join(known) or 'none'} "
                                   "(the policy's churn.flags)")
            lead = _lead_of(session, body)
            if lead is None:
                return _error(404, "no lead known for this signal (check crm/lead_id or account)")
            row, first = raise_signal(session, ctx, lead, SignalIn(body.signal_id, body.type, "api", body.occurred_at),
                                      now)
            result: dict[str, Any] = {"audit_id": row.id, "duplicate": not first, "lead_id": lead.crm_id}
    except IntegrityError:  # the same signal id raced in through another request: it is recorded once
        result = {"audit_id": None, "duplicate": True}
    except LookupError as exc:  # no policy applied yet
        return _error(503, str(exc))
    return JSONResponse(result, status_code=200)


def _lead_of(session: Session, body: SignalBody) -> Lead | None:
    if body.lead_id is not None and body.crm is not None:
        return session.scalars(select(Lead).where(Lead.crm == body.crm.value, Lead.crm_id == body.lead_id)).first()
    account = account_key(body.account)
    if account is None:
        return None
    return session.scalars(select(Lead).where(Lead.account_key == account)
                           .order_by(Lead.created_at.desc(), Lead.id.desc())).first()
