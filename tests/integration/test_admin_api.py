"""The admin API over HTTP (FastAPI TestClient): token, status, revert, audit export."""

from __future__ import annotations

import csv
import io
import json
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    # Starlette warns at import when its TestClient runs on `httpx` (what the dev extra pins).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from sidecar.audit import EXPORT_KEYS
from sidecar.engine.evaluator import tick
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, OutboxRow
from sidecar.web.admin import admin_router
from sidecar.web.app import create_app
from tests.support import add_team, apply_policy, context, ingest, ny, policy_raw, snapshot

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Harness:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions, self.ctx = sessions, context()
        self.now = ny(24, 8).astimezone(UTC)
        router = admin_router(sessions, self.ctx, TOKEN, clock=lambda: self.now)
        self.client = TestClient(create_app(sessions, [router]))
        self.version = apply_policy(sessions, policy_raw(), ny(1, 0))
        add_team(sessions)
        ingest(sessions, self.ctx, snapshot("00QA", at=ny(24, 8)))
        ingest(sessions, self.ctx, snapshot("00QB", at=ny(24, 9)))

    def advance(self, at: datetime) -> None:
        self.now = at.astimezone(UTC)
        tick(self.sessions, self.ctx, self.now)


def ladder_kinds(rows: list[dict[str, Any]]) -> list[str]:
    # Other rows (e.g. warnings recorded as ignored at the breach) may sit between the ladder steps.
    return [row["kind"] for row in rows if row["kind"].startswith("sla_")]


@pytest.fixture
def harness(sessions: sessionmaker[Session]) -> Harness:
    return Harness(sessions)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer "}])
def test_every_route_needs_the_token(harness: Harness, headers: dict[str, str]) -> None:
    responses = [harness.client.get("/admin/status", headers=headers),
                 harness.client.get("/admin/audit", headers=headers),
                 harness.client.post("/admin/leads/salesforce/00QA/revert", headers=headers,
                                     json={"actor": "ops"})]
    assert [r.status_code for r in responses] == [401, 401, 401]
    assert all(r.headers["www-authenticate"] == "Bearer" and TOKEN not in r.text for r in responses)


def test_an_empty_token_is_refused_at_build_time(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        admin_router(sessions, context(), "", clock=lambda: datetime.now(UTC))


def test_status_reports_clocks_and_outbox(harness: Harness) -> None:
    harness.advance(ny(24, 9))  # A: 80 % and 100 % fired; B just started
    response = harness.client.get("/admin/status", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"now", "open_clocks", "paused_clocks", "due_next_hour", "outbox", "dead", "last_polls",
                         "dead_intake", "oldest_pending", "unknown_values"}
    with transaction(harness.sessions) as session:
        pending = len(list(session.scalars(select(OutboxRow).where(OutboxRow.status == "pending"))))
    assert pending > 0
    assert (body["open_clocks"], body["paused_clocks"], body["due_next_hour"]) == (2, 0, 2)
    assert body["outbox"] == {"pending": pending}
    assert (body["dead"], body["last_polls"], body["dead_intake"]) == ([], {}, [])
    with transaction(harness.sessions) as session:
        oldest = min(session.scalars(select(OutboxRow.created_at).where(OutboxRow.status == "pending")))
    assert datetime.fromisoformat(body["oldest_pending"]) == oldest  # the backlog's age
    assert body["unknown_values"] == []  # every market, source, status and owner of the test org is known
    assert datetime.fromisoformat(body["now"]) == ny(24, 9)


def test_revert_returns_the_audit_row_then_conflicts(harness: Harness) -> None:
    harness.advance(ny(24, 9, 30))  # A is reassigned at 150 %
    harness.now = ny(24, 9, 40).astimezone(UTC)
    url = "/admin/leads/salesforce/00QA/revert"
    first = harness.client.post(url, headers=AUTH, json={"actor": "ops-jane", "reason": "rep was at lunch"})
    assert first.status_code == 200, first.text
    body = first.json()
    with transaction(harness.sessions) as session:
        row = session.get(AuditRow, body["audit_id"])
        reassign = session.scalars(select(AuditRow).where(AuditRow.kind == "sla_breach_auto_reassign")).one()
        assert row is not None
        assert (row.kind, row.actor, row.at) == ("reassignment_reverted", "ops-jane", ny(24, 9, 40))
        assert row.details["reason"] == "rep was at lunch"
        assert body["reverts_audit_id"] == reassign.id and body["to_owner"] == "r1"
    second = harness.client.post(url, headers=AUTH, json={"actor": "ops-jane", "reason": "again"})
    assert second.status_code == 409 and "already reverted" in second.json()["detail"]


def test_revert_of_a_lead_never_reassigned_conflicts(harness: Harness) -> None:
    response = harness.client.post("/admin/leads/salesforce/00QB/revert", headers=AUTH, json={"actor": "ops"})
    assert response.status_code == 409 and "never reassigned" in response.json()["detail"]


def test_revert_of_an_unknown_lead_is_404_and_a_bad_body_422(harness: Harness) -> None:
    unknown = harness.client.post("/admin/leads/salesforce/00Q404/revert", headers=AUTH, json={"actor": "ops"})
    wrong_crm = harness.client.post("/admin/leads/hubspot/00QA/revert", headers=AUTH, json={"actor": "ops"})
    no_actor = harness.client.post("/admin/leads/salesforce/00QA/revert", headers=AUTH, json={"reason": "x"})
    assert (unknown.status_code, wrong_crm.status_code, no_actor.status_code) == (404, 404, 422)
    assert "00Q404" in unknown.json()["detail"]


def test_audit_export_streams_json_lines_with_the_documented_keys(harness: Harness) -> None:
    harness.advance(ny(24, 9))
    response = harness.client.get("/admin/audit", headers=AUTH, params={"format": "jsonl"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert ladder_kinds(rows) == ["sla_breach_imminent", "sla_breach"]
    assert all(set(row) == set(EXPORT_KEYS) for row in rows)
    with transaction(harness.sessions) as session:
        assert len(rows) == len(list(session.scalars(select(AuditRow))))
    assert (rows[0]["lead_id"], rows[0]["policy_version"], rows[0]["rule_id"]) == (
        "00QA", harness.version, "sla.imminent")
    only_b = harness.client.get("/admin/audit", headers=AUTH, params={"lead": "00QB"})
    later = harness.client.get("/admin/audit", headers=AUTH, params={"since": "2026-11-24T14:00:01Z"})
    assert (only_b.text, later.text) == ("", "")
    earlier = harness.client.get("/admin/audit", headers=AUTH, params={"since": "2026-11-24T09:00:00-05:00"})
    assert len(earlier.text.splitlines()) == len(rows)


def test_audit_export_as_csv_and_a_naive_since_is_rejected(harness: Harness) -> None:
    harness.advance(ny(24, 9))
    response = harness.client.get("/admin/audit", headers=AUTH, params={"format": "csv"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert ladder_kinds(rows) == ["sla_breach_imminent", "sla_breach"]
    assert all(json.loads(row["details"])["clock_id"] for row in rows)
    naive = harness.client.get("/admin/audit", headers=AUTH, params={"since": "2026-11-24T09:00:00"})
    unknown_format = harness.client.get("/admin/audit", headers=AUTH, params={"format": "xml"})
    assert (naive.status_code, unknown_format.status_code) == (422, 422)
