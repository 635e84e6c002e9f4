"""Compliance decisions and the review queues over the admin API (token required, audited with the actor)."""

from __future__ import annotations

import warnings
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from sidecar.engine import patterns
from sidecar.ingest import apply_snapshot
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock
from sidecar.web.admin import admin_router
from sidecar.web.app import create_app
from tests.support import add_team, apply_policy, context, ny, policy_raw, snapshot

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_clear_and_reject_over_the_admin_api(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    with transaction(sessions) as session:
        for crm_id in ("00QA", "00QB"):
            applied = apply_snapshot(session, ctx.book, snapshot(crm_id, at=ny(24, 8), flags=frozenset({"pep"})))
            patterns.on_applied(session, ctx, applied, ny(24, 8).astimezone(UTC))
    now = ny(25, 9).astimezone(UTC)
    client = TestClient(create_app(sessions, [admin_router(sessions, ctx, TOKEN, clock=lambda: now)]))
    body = {"actor": "erin@compliance", "reason": "screened manually"}
    assert client.post("/admin/compliance/salesforce/00QA/clear", json=body).status_code == 401
    queue = client.get("/admin/queue", params={"queue": "compliance"}, headers=AUTH)
    assert [(i["lead"]["crm_id"], i["age_s"]) for i in queue.json()] == [("00QA", 25 * 3600), ("00QB", 25 * 3600)]
    cleared = client.post("/admin/compliance/salesforce/00QA/clear", json=body, headers=AUTH)
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["kind"], cleared.json()["crm_status"], cleared.json()["time_in_review_s"]) == (
        "compliance_cleared", "Open - Not Contacted", 25 * 3600)
    rejected = client.post("/admin/compliance/salesforce/00QB/reject", json={**body, "reason": "PEP"}, headers=AUTH)
    assert rejected.json()["crm_status"] == "Disqualified - Compliance"
    assert client.post("/admin/compliance/salesforce/00QB/clear", json=body, headers=AUTH).status_code == 409
    assert client.post("/admin/compliance/salesforce/00QX/clear", json=body, headers=AUTH).status_code == 404
    assert client.post("/admin/compliance/salesforce/00QA/approve", json=body, headers=AUTH).status_code == 422
    assert client.post("/admin/compliance/salesforce/00QA/clear", json={"actor": "x", "reason": ""},
                       headers=AUTH).status_code == 422
    assert client.get("/admin/queue", headers=AUTH).json() == []
    with transaction(sessions) as session:
        decided = list(session.scalars(select(AuditRow).where(AuditRow.pattern == "compliance",
                                                              AuditRow.action == "update").order_by(AuditRow.id)))
        open_sla = session.scalars(select(Clock).where(Clock.kind == "sla", Clock.status == "open")).one()
    assert [(r.kind, r.actor) for r in decided] == [("compliance_cleared", "erin@compliance"),
                                                    ("compliance_rejected", "erin@compliance")]
    assert (open_sla.started_at, open_sla.consumed_s) == (now, 0.0)  # the cleared lead's full window
