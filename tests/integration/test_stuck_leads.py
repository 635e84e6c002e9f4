"""Stuck leads (seed 000 pattern 2): 2x / 3x / 4x of the state's window in business time, whatever
happens inside the state; pause states stop the count; one ops-review item per lead and state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import jobs, outbox, review_queue
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.jobs import Runtime
from sidecar.outbox import Ports
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, ReviewItem
from tests.support import (
    FakeNotifier,
    FakeWriter,
    add_team,
    apply_policy,
    call,
    context,
    ingest,
    ny,
    policy_raw,
    snapshot,
)


def tick_and_dispatch(sessions: sessionmaker[Session], ctx: EngineContext, at: datetime) -> None:
    """One evaluate + dispatch, as `sidecar run` does: the SLA ladder's reassignment settles, so the
    lead's clocks are not held back waiting for an owner change nobody writes."""
    tick(sessions, ctx, at.astimezone(UTC))
    outbox.dispatch(sessions, Ports(FakeNotifier(), {"salesforce": FakeWriter()}), at.astimezone(UTC))


def stuck_rows(sessions: sessionmaker[Session]) -> list[AuditRow]:
    with transaction(sessions) as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.pattern == "stuck").order_by(AuditRow.id)))


def test_stuck_fires_at_2x_3x_4x_with_its_personas_and_one_review_item(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))  # Tue 08:00, NEW, 1 h window (TEST market)
    # A logged call restarts the SLA clock but not the stuck clock: still in NEW since 08:00.
    ingest(sessions, ctx, snapshot(at=ny(24, 8, 40), activities=(call("00T-1", ny(24, 8, 40)),)))
    at = ny(24, 8)
    while at <= ny(24, 17):
        tick_and_dispatch(sessions, ctx, at)
        at += timedelta(minutes=1)
    rows = stuck_rows(sessions)
    assert [(r.kind, r.rule_id, r.at, r.details["level"], r.elapsed_business_s, r.window_s) for r in rows] == [
        ("stuck_lead", "stuck.owner", ny(24, 10), 1, 7200.0, 3600),
        ("stuck_lead", "stuck.manager", ny(24, 11), 2, 10800.0, 3600),
        ("stuck_lead", "stuck.review", ny(24, 12), 3, 14400.0, 3600),
    ]
    assert [r.action for r in rows] == ["notify", "notify", "review"]
    assert all(r.details["late"] is False and r.policy_version for r in rows)
    with transaction(sessions) as session:
        notes = {row.audit_id: row.payload for row in session.scalars(
            select(OutboxRow).where(OutboxRow.action == "notify", OutboxRow.audit_id.in_([r.id for r in rows])))}
        items = list(session.scalars(select(ReviewItem)))
        sla_closed = [c.close_reason for c in session.scalars(select(Clock).where(Clock.kind == "stuck"))]
    assert [(notes[r.id]["persona"], notes[r.id]["via"], notes[r.id]["recipient_email"] or notes[r.id]["channel"])
            for r in rows] == [("owner", "slack_dm", "r1@example.com"), ("manager", "team_channel", "#sales-us"),
                               ("ops_review", "channel", "#lead-ops-review")]
    assert [(i.queue, i.reason, i.rule_id, i.resolved_at) for i in items] == [
        ("ops_review", "stuck in NEW", "stuck.review", None)]
    assert items[0].details["audit_id"] == rows[2].id
    assert sla_closed == [None]  # the stuck clock is still the lead's NEW clock (not reset by the call)
    # Nothing more fires in that state, however long it stays; the queue still holds one item.
    tick(sessions, ctx, ny(27, 17).astimezone(UTC))
    assert len(stuck_rows(sessions)) == 3
    with transaction(sessions) as session:
        assert len(review_queue.items(session, review_queue.OPS_REVIEW)) == 1


def test_leaving_the_state_starts_a_new_count_and_a_new_review_item_only_when_stuck_again(
        sessions: sessionmaker[Session]) -> None:
    ctx = context()
    raw = policy_raw()
    raw["windows"].append({"id": "contacted.test", "state": "CONTACTED", "market": "TEST", "window": "1h"})
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    ingest(sessions, ctx, snapshot(at=ny(24, 9, 30), status="Working - Contacted"))  # left NEW after 1.5 h
    for hour in range(9, 18):
        tick_and_dispatch(sessions, ctx, ny(24, hour, 59))
    rows = stuck_rows(sessions)
    # Nothing for NEW (left before 2x); CONTACTED since 09:30: 11:30, 12:30, 13:30.
    assert [(r.details["state"], r.at) for r in rows] == [
        ("CONTACTED", ny(24, 11, 59)), ("CONTACTED", ny(24, 12, 59)), ("CONTACTED", ny(24, 13, 59))]
    assert [r.details["due_at"] for r in rows] == [
        ny(24, 11, 30).astimezone(UTC).isoformat(), ny(24, 12, 30).astimezone(UTC).isoformat(),
        ny(24, 13, 30).astimezone(UTC).isoformat()]
    with transaction(sessions) as session:
        assert [i.reason for i in review_queue.items(session)] == ["stuck in CONTACTED"]


def test_on_hold_leads_produce_no_stuck_lead_events_in_a_30_day_run(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QHOLD", at=ny(2, 8)))
    ingest(sessions, ctx, snapshot("00QHOLD", at=ny(2, 8, 30), status="On Hold"))  # 30 min into its window
    ingest(sessions, ctx, snapshot("00QOPEN", at=ny(2, 8)))  # the control: left in NEW, never touched
    rt = Runtime(sessions, ctx, {}, Ports(FakeNotifier(), {"salesforce": FakeWriter()}))
    at, end = ny(2, 8).astimezone(UTC), ny(2, 8).astimezone(UTC) + timedelta(days=30)
    cycles = 0
    while at <= end:  # every job, hourly on virtual time (evaluate catches up on anything due meanwhile)
        jobs.run_cycle(rt, at, poll=False)
        at += timedelta(hours=1)
        cycles += 1
    assert cycles == 30 * 24 + 1
    with transaction(sessions) as session:
        by_lead: dict[str, list[str]] = {}
        for row, crm_id in session.execute(select(AuditRow, Lead.crm_id).join(Lead, Lead.id == AuditRow.lead_id)):
            by_lead.setdefault(crm_id, []).append(row.kind)
        hold_id = session.scalars(select(Lead.id).where(Lead.crm_id == "00QHOLD")).one()
        held = session.scalars(select(Clock).where(Clock.lead_id == hold_id).order_by(Clock.kind)).all()
    assert "stuck_lead" not in by_lead.get("00QHOLD", [])
    assert by_lead.get("00QHOLD", []) == []  # no SLA step either: its clocks are paused
    assert [(c.kind, c.status, c.consumed_s) for c in held] == [("sla", "paused", 1800.0), ("stuck", "paused", 1800.0)]
    assert by_lead["00QOPEN"].count("stuck_lead") == 3  # the run could flag: the control lead got all three
