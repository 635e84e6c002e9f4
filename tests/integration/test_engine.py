"""The ladder, progress rules, pauses and policy snapshots, with an injected clock and fake ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.evaluator import tick
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, LeadEvent, OutboxRow
from tests.support import add_team, apply_policy, call, context, ingest, ny, policy_raw, snapshot


def audit_rows(sessions: sessionmaker[Session]) -> list[AuditRow]:
    with transaction(sessions) as session:
        return list(session.scalars(select(AuditRow).order_by(AuditRow.id)))


def ladder_kinds(sessions: sessionmaker[Session]) -> list[tuple[str, datetime]]:
    return [(row.kind, row.at) for row in audit_rows(sessions) if row.kind.startswith("sla_")]


def outbox_keys(sessions: sessionmaker[Session]) -> dict[str, OutboxRow]:
    with transaction(sessions) as session:
        return {row.idempotency_key: row for row in session.scalars(select(OutboxRow))}


def run_minutes(sessions: sessionmaker[Session], ctx, start: datetime, end: datetime) -> None:
    """Tick once a minute from start to end, the way the scheduler would (virtual time)."""
    at = start
    while at <= end:
        tick(sessions, ctx, at.astimezone(UTC))
        at += timedelta(minutes=1)


def test_ladder_fires_at_80_100_150_percent_exactly_once(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))  # Tuesday 08:00 New York, NEW, 1h window
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 10))
    assert ladder_kinds(sessions) == [
        ("sla_breach_imminent", ny(24, 8, 48)),
        ("sla_breach", ny(24, 9, 0)),
        ("sla_breach_auto_reassign", ny(24, 9, 30)),
    ]
    every = audit_rows(sessions)
    assert all(row.rule_id and row.policy_version for row in every)
    rows = [row for row in every if row.kind.startswith("sla_")]
    assert [row.elapsed_business_s for row in rows[-3:]] == [2880, 3600, 5400]
    # the 80 % warning went unanswered: recorded as ignored at the breach, linked to both rows
    ignored = [row for row in every if row.kind == "notification_ignored"]
    assert [(r.rule_id, r.at, r.details["warning_audit_id"], r.details["breach_audit_id"]) for r in ignored] == [
        ("sla.imminent", ny(24, 9, 0), rows[-3].id, rows[-2].id)]
    assert all(row.details["late"] is False for row in rows[-3:])
    keys = outbox_keys(sessions)
    imminent = [k for k, r in keys.items() if r.audit_id == rows[-3].id]
    breach = [k for k, r in keys.items() if r.audit_id == rows[-2].id]
    reassign = {keys[k].action for k, r in keys.items() if r.audit_id == rows[-1].id}
    assert [keys[k].payload["via"] for k in imminent] == ["slack_dm"]
    assert keys[imminent[0]].payload["recipient_email"] == "r1@example.com"
    assert sorted(keys[k].action for k in breach) == ["add_note", "notify"]
    manager = next(keys[k] for k in breach if keys[k].action == "notify")
    assert (manager.payload["via"], manager.payload["channel"]) == ("team_channel", "#sales-us")
    assert reassign == {"change_owner", "create_task", "notify"}
    assert rows[-1].details["to_owner"] == "r2" and rows[-1].details["from_owner"] == "r1"
    # the new owner gets a fresh window of their own, starting at the reassignment
    with transaction(sessions) as session:
        clocks = session.scalars(select(Clock).where(Clock.kind == "sla").order_by(Clock.id)).all()
    assert [(c.status, c.close_reason) for c in clocks] == [("closed", "reassigned"), ("open", None)]
    assert clocks[1].started_at == ny(24, 9, 30) and clocks[1].next_due_at == ny(24, 10, 18)


def test_business_hours_end_moves_later_steps_to_the_next_morning(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    raw = policy_raw()
    raw["markets"]["TEST"]["hours"] = {"mon-fri": ["08:00-09:10"]}
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(20, 8)))  # Friday
    run_minutes(sessions, ctx, ny(20, 8), ny(20, 12))
    tick(sessions, ctx, ny(23, 8, 19).astimezone(UTC))
    assert [k for k, _ in ladder_kinds(sessions)] == ["sla_breach_imminent", "sla_breach"]
    tick(sessions, ctx, ny(23, 8, 20).astimezone(UTC))  # Monday: 70 min on Friday + 20 min
    assert ladder_kinds(sessions)[-1] == ("sla_breach_auto_reassign", ny(23, 8, 20))


def test_logged_call_resets_the_clock_but_field_edits_do_not(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8)))
    ingest(sessions, ctx, snapshot("00QB", at=ny(24, 8)))
    # A: a real call at 08:40. B: only a field edit (score) at 08:40 -- not progress.
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8, 40), activities=(call("00T-A", ny(24, 8, 40)),)))
    ingest(sessions, ctx, snapshot("00QB", at=ny(24, 8, 40), score=55.0))
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 9, 30))
    with transaction(sessions) as session:
        fired = [(row.lead_id, row.kind, row.at) for row in session.scalars(
            select(AuditRow).where(AuditRow.kind == "sla_breach_imminent").order_by(AuditRow.at))]
        closed = session.scalars(select(Clock).where(Clock.close_reason == "progress")).all()
        field_events = session.scalars(select(LeadEvent).where(LeadEvent.kind == "field_changed")).all()
    assert [(kind, at) for _lead, kind, at in fired] == [
        ("sla_breach_imminent", ny(24, 8, 48)),  # B keeps its 08:00 clock
        ("sla_breach_imminent", ny(24, 9, 28)),  # A restarted at 08:40: 80 % of 1 h later
    ]
    assert len(closed) == 1 and closed[0].closed_at == ny(24, 8, 40)
    assert [(e.old, e.new) for e in field_events] == [(None, "55.0")]


def test_on_hold_pauses_and_resume_keeps_consumed_time(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    ingest(sessions, ctx, snapshot(at=ny(24, 8, 30), status="On Hold"))
    run_minutes(sessions, ctx, ny(24, 8, 30), ny(24, 10))
    assert ladder_kinds(sessions) == []
    with transaction(sessions) as session:
        clock = session.scalars(select(Clock).where(Clock.kind == "sla")).one()
        assert (clock.status, clock.consumed_s, clock.next_due_at) == ("paused", 1800.0, None)
    # Two days later (Thursday) it comes back to NEW: 30 of 60 minutes were already used.
    ingest(sessions, ctx, snapshot(at=ny(26, 8, 30), status="Open - Not Contacted"))
    run_minutes(sessions, ctx, ny(26, 8, 30), ny(26, 9, 5))
    assert ladder_kinds(sessions) == [("sla_breach_imminent", ny(26, 8, 48)), ("sla_breach", ny(26, 9, 0))]


def test_policy_change_mid_window_keeps_the_running_clock_on_its_version(
        sessions: sessionmaker[Session]) -> None:
    ctx = context()
    v1 = apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8)))
    raw = policy_raw()
    raw["windows"][-1]["window"] = "2h"
    v2 = apply_policy(sessions, raw, ny(24, 8, 10))
    assert v1 != v2
    ingest(sessions, ctx, snapshot("00QB", at=ny(24, 8, 20)))
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 10))
    imminent = [(row.policy_version, row.at) for row in audit_rows(sessions)
                if row.kind == "sla_breach_imminent"]
    assert imminent == [(v1, ny(24, 8, 48)), (v2, ny(24, 9, 56))]


def test_missed_steps_fire_once_each_in_order_marked_late(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 12).astimezone(UTC))  # the sidecar was down until noon
    tick(sessions, ctx, ny(24, 12, 1).astimezone(UTC))
    rows = [row for row in audit_rows(sessions) if row.kind.startswith("sla_")]
    assert [row.kind for row in rows] == ["sla_breach_imminent", "sla_breach", "sla_breach_auto_reassign"]
    assert all(row.details["late"] is True for row in rows)
    assert [row.details["due_at"] for row in rows] == [
        ny(24, 8, 48).astimezone(UTC).isoformat(), ny(24, 9).astimezone(UTC).isoformat(),
        ny(24, 9, 30).astimezone(UTC).isoformat()]


def test_same_snapshot_twice_and_older_snapshots_change_nothing(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    first = snapshot(at=ny(24, 8, 30), status="Working - Contacted",
                     activities=(call("00T1", ny(24, 8, 20)),))
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    ingest(sessions, ctx, first)
    with transaction(sessions) as session:
        count = len(session.scalars(select(LeadEvent)).all())
    ingest(sessions, ctx, first)
    ingest(sessions, ctx, snapshot(at=ny(24, 8, 10)))  # older than stored: a late delivery
    with transaction(sessions) as session:
        events = session.scalars(select(LeadEvent).order_by(LeadEvent.id)).all()
        assert len(events) == count
        assert [e.kind for e in events] == ["created", "progress", "state_changed"]
        clock = session.scalars(select(Clock).where(Clock.kind == "sla", Clock.status == "open")).one()
        assert clock.state == "CONTACTED"


def test_recompute_moves_running_clocks_and_keeps_used_time(sessions: sessionmaker[Session]) -> None:
    from sidecar.engine.clocks import recompute

    ctx = context()
    v1 = apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    raw = policy_raw()
    raw["windows"][-1]["window"] = "2h"
    v2 = apply_policy(sessions, raw, ny(24, 8, 10))
    with transaction(sessions) as session:
        # the SLA clock and the stuck-lead clock of the same state both move
        assert recompute(session, ctx.book, ny(24, 8, 10).astimezone(UTC)) == 2
        clock = session.scalars(select(Clock).where(Clock.kind == "sla")).one()
        assert (clock.policy_version, clock.window_s, clock.consumed_s) == (v2, 7200, 600.0)
    run_minutes(sessions, ctx, ny(24, 8, 10), ny(24, 9, 40))
    # 10 minutes used under v1, then 80 % of 2 h: 96 minutes after 08:00
    assert [(kind, at) for kind, at in ladder_kinds(sessions)] == [("sla_breach_imminent", ny(24, 9, 36))]
    assert audit_rows(sessions)[0].policy_version == v2 != v1


def test_regional_vp_is_found_in_the_directory_for_a_dm(sessions: sessionmaker[Session]) -> None:
    from sidecar.store.models import Rep

    ctx = context()
    raw = policy_raw()
    raw["ladder"][1]["notify"] = ["manager", "regional_vp"]
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    with transaction(sessions) as session:
        session.add(Rep(id="vp1", crm="salesforce", name="Vera VP", email="vera@example.com", role="vp"))
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 9).astimezone(UTC))
    keys = outbox_keys(sessions)
    vp = next(row for key, row in keys.items() if key.endswith(":notify:regional_vp"))
    assert (vp.payload["via"], vp.payload["recipient_email"]) == ("slack_dm", "vera@example.com")


def test_leads_waiting_before_go_live_get_a_full_window_from_then(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(24, 9))  # the sidecar is installed Tuesday 09:00
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(20, 8)))  # a lead that has waited since last Friday
    run_minutes(sessions, ctx, ny(24, 9), ny(24, 10))
    assert ladder_kinds(sessions) == [("sla_breach_imminent", ny(24, 9, 48)), ("sla_breach", ny(24, 10))]


def test_the_last_applied_policy_is_active_even_within_one_instant(sessions: sessionmaker[Session]) -> None:
    from sidecar.policy import validate_policy
    from sidecar.policy.version import active_version, record_version

    first, second = policy_raw(), policy_raw()
    second["windows"][0]["window"] = "3h"
    at = ny(24, 9).astimezone(UTC)
    with transaction(sessions) as session:
        v1 = record_version(session, validate_policy(first), "a", at).version
        v2 = record_version(session, validate_policy(second), "b", at).version
        assert active_version(session).version == v2
        record_version(session, validate_policy(first), "a", at - timedelta(minutes=5))  # a late CLI clock
        assert active_version(session).version == v1
