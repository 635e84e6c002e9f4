"""The admin API: status, reverting a reassignment, compliance decisions, the review queues and the
audit export, behind one bearer token.

The token is compared in constant time and never logged or echoed; a missing or wrong token gets
the same 401, so a caller cannot tell which one it was. `create_app` checks it in a middleware
(`sidecar.web.guard`) before any body is read; the dependency below checks it again and puts the
bearer scheme into the (token-protected) schema at /admin/openapi.json. There is one token and so
one role: every holder may do everything here.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Query
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit, review_queue
from sidecar.engine.patterns.compliance_decisions import ComplianceError, decide
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.revert import RevertError, revert_reassignment
from sidecar.status import Status, gather
from sidecar.store.db import transaction
from sidecar.store.models import Lead
from sidecar.web.guard import GuardedRouter

# Module level on purpose: FastAPI resolves the (postponed) annotations below in module globals.
_BEARER = HTTPBearer(auto_error=False)  # we answer 401 ourselves, the same way for every failure
_MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class DecisionBody(BaseModel):
    actor: str = Field(min_length=1, max_length=100)  # the compliance officer deciding (audited)
    reason: str = Field(min_length=1, max_length=2000)


class RevertBody(BaseModel):
    actor: str = Field(min_length=1, max_length=100)  # AuditRow.actor width
    reason: str = Field(default="", max_length=2000)


def status_json(status: Status, now: datetime) -> dict[str, Any]:
    """`sidecar.status.Status` as JSON: times as ISO 8601, dead letters as objects."""
    return {
        "now": now.isoformat(),
        "open_clocks": status.open_clocks,
        "paused_clocks": status.paused_clocks,
        "due_next_hour": status.due_next_hour,
        "outbox": status.outbox,
        "dead": [{"key": key, "action": action, "reason": reason} for key, action, reason in status.dead],
        "last_polls": {crm: at.isoformat() if at else None for crm, at in status.last_polls.items()},
        "dead_intake": [{"crm": crm, "crm_id": crm_id[:40], "reason": why} for crm, crm_id, why in status.dead_intake],
        "oldest_pending": status.oldest_pending.isoformat() if status.oldest_pending else None,
        "unknown_values": [{"what": u.what, "crm": u.crm, "value": u.value, "leads": u.leads,
                            "example_crm_id": u.example_crm_id, "effect": u.effect} for u in status.unknown],
    }


def admin_router(sessions: sessionmaker[Session], ctx: EngineContext, admin_token: str,
                 clock: Callable[[], datetime]) -> GuardedRouter:
    """`/admin/*` routes; every one needs `Authorization: Bearer <admin_token>`."""
    if not admin_token:
        # An empty token would make compare_digest(b"", b"") succeed for every anonymous caller.
        raise ValueError("the admin API needs a non-empty admin token; leave it unmounted otherwise")
    expected = admin_token.encode()

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(status_code=401, detail="missing or wrong admin token",
                                headers={"WWW-Authenticate": "Bearer"})

    router = GuardedRouter(prefix="/admin", token=admin_token, dependencies=[Depends(authorize)])

    @router.get("/status")
    def status() -> dict[str, Any]:
        now = clock()
        with transaction(sessions) as session:
            return status_json(gather(session, now), now)

    @router.post("/leads/{crm}/{crm_id}/revert")
    def revert(crm: str, crm_id: str, body: RevertBody) -> dict[str, Any]:
        with transaction(sessions) as session:
            lead = session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()
            if lead is None:
                raise HTTPException(status_code=404, detail=f"no {crm} lead {crm_id} is known to the sidecar")
            try:
                row = revert_reassignment(session, ctx, crm, crm_id, body.actor, body.reason, clock())
            except RevertError as err:
                raise HTTPException(status_code=409, detail=str(err)) from None
            return {"audit_id": row.id, "reverts_audit_id": row.details["reverts_audit_id"],
                    "from_owner": row.details["from_owner"], "to_owner": row.details["to_owner"]}

    @router.post("/compliance/{crm}/{crm_id}/{decision}")
    def compliance_decision(crm: str, crm_id: str, decision: Literal["clear", "reject"],
                            body: DecisionBody) -> dict[str, Any]:
        with transaction(sessions) as session:
            lead = session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()
            if lead is None:
                raise HTTPException(status_code=404, detail=f"no {crm} lead {crm_id} is known to the sidecar")
            try:
                row = decide(session, ctx, crm, crm_id, decision, body.actor, body.reason, clock())
            except ComplianceError as err:
                raise HTTPException(status_code=409, detail=str(err)) from None
            return {"audit_id": row.id, "kind": row.kind, "crm_status": row.details.get("crm_status"),
                    "review_item_id": row.details["review_item_id"],
                    "time_in_review_s": row.details["time_in_review_s"]}

    @router.get("/queue")
    def queue(name: Annotated[Literal["ops_review", "compliance"] | None, Query(alias="queue")] = None
              ) -> list[dict[str, Any]]:
        now = clock()
        with transaction(sessions) as session:
            return [review_queue.as_json(item, session.get(Lead, item.lead_id), now)
                    for item in review_queue.items(session, name)]

    @router.get("/audit")
    def audit_export(lead: str | None = None, since: datetime | None = None,
                     fmt: Annotated[Literal["jsonl", "csv"], Query(alias="format")] = "jsonl") -> StreamingResponse:
        if since is not None and since.tzinfo is None:
            # A naive time would silently be read as UTC or server time; make the caller say which.
            raise HTTPException(status_code=422, detail="since needs a UTC offset, e.g. 2026-11-24T14:00:00Z")

        def lines() -> Iterator[str]:
            # export() is lazy: the session has to stay open until the last line is sent.
            with transaction(sessions) as session:
                yield from audit.export(session, fmt, lead_crm_id=lead, since=since)

        return StreamingResponse(lines(), media_type=_MEDIA_TYPES[fmt])

    return router
