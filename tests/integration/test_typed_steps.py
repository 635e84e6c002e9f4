"""Steps are typed actions; kinds are labels: an admin may rename any step's kind and nothing breaks."""

from __future__ import annotations

import copy
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

from connectors.slack.messages import build_message
from sidecar import audit
from sidecar.domain import Persona
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns import registry
from sidecar.engine.patterns.shared import EngineContext
from sidecar.ingest import Applied
from sidecar.outbox import Ports, dispatch
from sidecar.ports import ChangePage, Cursor
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead
from sidecar.sync import PollStats, apply_page
from sidecar.web.admin import admin_router
from sidecar.web.app import create_app
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ingest, ny, policy_raw, snapshot

AUTH = {"Authorization": "Bearer t0ken"}


def renamed_policy() -> dict[str, Any]:
    raw = policy_raw()
    ladder = copy.deepcopy(raw["ladder"])
    for step in ladder:
        if step.get("reassign"):
            step["kind"] = "handed_over"
    return policy_raw(ladder=ladder)


def breached(sessions: sessionmaker[Session], raw: dict[str, Any]) -> tuple[EngineContext, FakeNotifier]:
    ctx = context()
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))
    notifier = FakeNotifier()
    dispatch(sessions, Ports(notifier, {"salesforce": FakeWriter()}), ny(24, 9, 30).astimezone(UTC))
    return ctx, notifier


def test_a_renamed_reassign_step_is_still_revertable_and_offers_the_revert_button(
        sessions: sessionmaker[Session]) -> None:
    ctx, notifier = breached(sessions, renamed_policy())
    with transaction(sessions) as session:
        step = session.scalars(select(AuditRow).where(AuditRow.kind == "handed_over")).one()
        assert (step.pattern, step.action, step.to_owner) == ("sla", "reassign", "r2")
        assert audit.action_counts(session)["reassign"] == 1
    manager = next(n for n in notifier.sent.values() if n.persona is Persona.MANAGER and n.kind == "handed_over")
    assert (manager.reassignment, manager.via) == (True, "team_channel")
    key = next(k for k, n in notifier.sent.items() if n is manager)
    buttons = [e["action_id"] for b in build_message(manager, key).blocks if b["type"] == "actions"
               for e in b["elements"]]
    assert "revert_reassignment" in buttons
    owner = next(n for n in notifier.sent.values() if n.persona is Persona.OWNER and n.kind == "handed_over")
    assert owner.reassignment  # the old owner hears it was given away; DMs carry no Revert button
    now = ny(24, 9, 40).astimezone(UTC)
    client = TestClient(create_app(sessions, [admin_router(sessions, ctx, "t0ken", clock=lambda: now)]))
    response = client.post("/admin/leads/salesforce/00Q1/revert", headers=AUTH, json={"actor": "us-mgr"})
    assert response.status_code == 200, response.text
    assert response.json()["reverts_audit_id"] == step.id and response.json()["to_owner"] == "r1"
    with transaction(sessions) as session:
        revert = session.get(AuditRow, response.json()["audit_id"])
        assert revert is not None and (revert.pattern, revert.action, revert.to_owner) == ("revert", "revert", "r1")
        lead = session.scalars(select(Lead)).one()
        assert lead.owner_id == "r1"
    again = client.post("/admin/leads/salesforce/00Q1/revert", headers=AUTH, json={"actor": "us-mgr"})
    assert again.status_code == 409 and "already reverted" in again.json()["detail"]


def test_warnings_and_breaches_are_typed_as_notify_and_carry_no_revert(sessions: sessionmaker[Session]) -> None:
    _ctx, notifier = breached(sessions, policy_raw())
    with transaction(sessions) as session:
        rows = {row.kind: row for row in session.scalars(select(AuditRow))}
        assert (rows["sla_breach_imminent"].pattern, rows["sla_breach_imminent"].action) == ("sla", "notify")
        assert (rows["sla_breach"].action, rows["sla_breach"].to_owner) == ("notify", None)
        assert rows["sla_breach_auto_reassign"].action == "reassign"
        assert rows["notification_ignored"].pattern == "sla" and rows["notification_ignored"].action is None
    flagged = {n.kind for n in notifier.sent.values() if n.reassignment}
    assert flagged == {"sla_breach_auto_reassign"}


def test_a_reassign_step_that_found_nobody_is_not_a_reassignment(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions, reps=("r1",))  # nobody else in the team: the manager hears it, no owner change
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))
    notifier = FakeNotifier()
    dispatch(sessions, Ports(notifier, {"salesforce": FakeWriter()}), ny(24, 9, 30).astimezone(UTC))
    with transaction(sessions) as session:
        step = session.scalars(select(AuditRow).where(AuditRow.kind == "sla_breach_auto_reassign")).one()
        assert (step.action, step.to_owner) == ("notify", None)
        assert "reassign" not in audit.action_counts(session)
    assert notifier.sent and not any(n.reassignment for n in notifier.sent.values())


def test_the_tick_dispatches_by_clock_kind(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    seen: list[int] = []

    def probe(session: Session, ctx: EngineContext, clock: Clock, lead: Lead, now: datetime) -> AuditRow:
        seen.append(clock.id)
        clock.status = "closed"
        return audit.record(session, at=now, kind="probe_fired", lead=lead)

    monkeypatch.setitem(registry._CLOCK_HANDLERS, "probe", probe)
    with transaction(sessions) as session:
        clock = session.scalars(select(Clock).where(Clock.kind == "sla")).one()
        clock.kind, clock_id = "probe", clock.id
    assert tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC)) == {"probe_fired": 1}
    assert seen == [clock_id]
    with transaction(sessions) as session:
        session.get(Clock, clock_id).kind, session.get(Clock, clock_id).status = "unknown", "open"  # type: ignore[union-attr]
    assert tick(sessions, ctx, ny(24, 9, 31).astimezone(UTC)) == {}  # reported, retried next tick, nothing fired
    with pytest.raises(ValueError, match="already has a handler"):
        registry.register_clock("probe", lambda *args: args[-1])  # type: ignore[arg-type,return-value]


def test_event_handlers_run_after_each_applied_snapshot_and_a_failing_one_is_audited(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)

    def watcher(session: Session, ctx: EngineContext, applied: Applied, now: datetime) -> None:
        # What it saw is written as a row: the patterns' effects are rows, so a row is what must
        # land exactly once per snapshot (a group of snapshots that fails is rolled back whole and
        # applied again one at a time, each isolated; see `sync.apply_snapshots`).
        audit.record(session, at=now, kind="watched", lead=applied.lead, details={"events": len(applied.events)})

    def broken(session: Session, ctx: EngineContext, applied: Applied, now: datetime) -> None:
        audit.record(session, at=now, kind="half_done", lead=applied.lead)
        raise RuntimeError("boom")

    monkeypatch.setitem(registry._EVENT_HANDLERS, "watcher", watcher)
    monkeypatch.setitem(registry._EVENT_HANDLERS, "broken", broken)
    now = ny(24, 8, 5).astimezone(UTC)
    page = ChangePage([snapshot("00QA", at=ny(24, 8)), snapshot("00QB", at=ny(24, 8, 1))], Cursor(ny(24, 8, 1), ()))
    apply_page(sessions, ctx, "salesforce", page, PollStats(), now)
    with transaction(sessions) as session:
        seen = [(row.lead_id, row.at, row.details["events"]) for row in session.scalars(
            select(AuditRow).where(AuditRow.kind == "watched").order_by(AuditRow.id))]
        ids = {lead.crm_id: lead.id for lead in session.scalars(select(Lead))}
        assert [(lead_id, at) for lead_id, at, _n in seen] == [(ids["00QA"], now), (ids["00QB"], now)]
        assert all(n > 0 for _id, _at, n in seen)
        assert len(list(session.scalars(select(Lead)))) == 2  # ingest went on despite the broken pattern
        failed = list(session.scalars(select(AuditRow).where(AuditRow.kind == "pattern_failed")))
        assert [json.dumps(row.details, sort_keys=True) for row in failed] == [
            json.dumps({"error": "RuntimeError: boom", "pattern": "broken", "intent_tier": "unclear",
                        "intent_rule": "default"}, sort_keys=True)] * 2  # every row of a lead names its tier
        assert not list(session.scalars(select(AuditRow).where(AuditRow.kind == "half_done")))  # rolled back
