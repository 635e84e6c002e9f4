"""Intent tiers drive the first-response clock (issue 12 item 2, seed 002's table): a tier's own window
and ladder at absolute minutes, qualification or review instead of a ladder, and the tier and the rule
that chose it on every audit row. Engine level, with an injected clock and fake ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.domain import Intent, LeadSnapshot
from sidecar.engine import patterns
from sidecar.engine.evaluator import tick
from sidecar.ingest import apply_snapshot
from sidecar.outbox import Ports, dispatch
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, OutboxRow, Team
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ny, policy_raw, snapshot

HIGH_TIER = {"window": "15m", "first_action": "Call within 15 minutes.", "ladder": [
    {"id": "high.reminder", "at": "10m", "kind": "sla_breach_imminent", "notify": ["owner"]},
    {"id": "high.manager", "at": "20m", "kind": "sla_breach", "notify": ["manager"], "crm_note": True},
    {"id": "high.reassign", "at": "30m", "kind": "sla_breach_auto_reassign", "reassign": "same_team",
     "notify": ["owner", "new_owner", "manager"]}]}


def with_tiers(**tiers: dict[str, Any]) -> dict[str, Any]:
    raw = policy_raw()
    raw["intent"]["tiers"] = {**raw["intent"]["tiers"], **tiers}
    return raw


def arrive(sessions: sessionmaker[Session], snap: LeadSnapshot, ctx: Any) -> None:
    """What a poll or webhook drain does with one snapshot: apply it, then the event-driven patterns."""
    with transaction(sessions) as session:
        applied = apply_snapshot(session, ctx.book, snap)
        patterns.on_applied(session, ctx, applied, snap.crm_modified_at)


def run_minutes(sessions: sessionmaker[Session], ctx: Any, start: datetime, end: datetime,
                writer: FakeWriter | None = None) -> None:
    """Evaluate and dispatch each minute, as `sidecar run` does: a reassignment settles, so the new
    owner's clock is not held back waiting for an owner change nobody writes."""
    at = start
    while at <= end:
        tick(sessions, ctx, at.astimezone(UTC))
        dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer or FakeWriter()}), at.astimezone(UTC))
        at += timedelta(minutes=1)


def rows(sessions: sessionmaker[Session]) -> list[AuditRow]:
    with transaction(sessions) as session:
        found = list(session.scalars(select(AuditRow).order_by(AuditRow.id)))
        session.expunge_all()
    return found


def due(task: OutboxRow) -> datetime:
    return datetime.fromisoformat(str(task.payload["due_at"]))


def tasks(sessions: sessionmaker[Session]) -> list[OutboxRow]:
    with transaction(sessions) as session:
        found = list(session.scalars(select(OutboxRow).where(OutboxRow.action == "create_task").order_by(OutboxRow.id)))
        session.expunge_all()
    return found


def test_a_high_intent_lead_follows_its_tiers_ladder_at_absolute_minutes(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, with_tiers(high=HIGH_TIER), ny(1, 0))
    add_team(sessions)
    arrive(sessions, snapshot(at=ny(24, 8), intent=Intent.HIGH), ctx)  # Tuesday 08:00, the CRM says high
    arrive(sessions, snapshot("00QMID", at=ny(24, 8), intent=Intent.MID, owner="r2"), ctx)
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 10))
    every = rows(sessions)
    steps = [r for r in every if r.pattern == "sla" and r.kind != "notification_ignored"]
    high = [(r.rule_id, r.at) for r in steps if r.lead_id == 1]
    # seed 002: reminder at 10, manager at 20, reassign at 30 minutes: exact, not fractions of an hour
    assert high[:4] == [("high.reminder", ny(24, 8, 10)), ("high.manager", ny(24, 8, 20)),
                        ("high.reassign", ny(24, 8, 30)),
                        ("high.reminder", ny(24, 8, 40))]  # the new owner's fresh 15 minutes: same tier
    # a mid-intent lead of the same policy keeps the main 80/100/150 ladder on its 1h window
    mid = [(r.rule_id, r.at) for r in steps if r.lead_id == 2]
    assert mid == [("sla.imminent", ny(24, 8, 48)), ("sla.breach", ny(24, 9)), ("sla.reassign", ny(24, 9, 30))]
    [task, *_] = tasks(sessions)
    assert due(task) == ny(24, 8, 15)  # the tier's 15 minutes
    assert "Recommended first action: Call within 15 minutes." in task.payload["body"]
    assert task.payload["priority"] == "high"
    # every row of the lead names the tier and what chose it (here the CRM)
    assert {(r.details["intent_tier"], r.details["intent_rule"]) for r in every if r.lead_id == 1} == {("high", "crm")}
    with transaction(sessions) as session:
        first_clock = session.get(Clock, 1)
        assert first_clock is not None and (first_clock.ladder, first_clock.rule_id, first_clock.window_s) == (
            "high", "intent.tiers.high", 900)


def test_an_intent_rule_is_named_on_every_row_of_the_lead(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    arrive(sessions, snapshot(at=ny(24, 8), source="web_form", score=70), ctx)  # intent.high.demo
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 9, 30))
    mine = [r for r in rows(sessions) if r.lead_id == 1]
    assert {r.kind for r in mine} >= {"first_response_task", "sla_breach_imminent", "sla_breach"}
    assert {(r.details["intent_tier"], r.details["intent_rule"]) for r in mine} == {("high", "intent.high.demo")}


def test_an_unclear_lead_gets_a_qualification_task_instead_of_the_ladder(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, with_tiers(unclear={"escalation": "qualification_task"}), ny(1, 0))
    add_team(sessions)
    arrive(sessions, snapshot(at=ny(24, 8), source="web_form"), ctx)  # no score: the default, unclear
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 12))
    every = rows(sessions)
    assert not [r for r in every if r.pattern == "sla"]  # no reminder, no manager, no reassignment
    [row] = [r for r in every if r.pattern == "first_response"]
    assert (row.kind, row.action, row.details["escalation"]) == ("first_response_task", "task", "qualification_task")
    [task] = tasks(sessions)
    assert task.payload["subject"] == "Qualify: Aisha Al-Mansoori (Emirates Group)"
    assert task.payload["owner_id"] == "r1"
    assert due(task) == ny(24, 9)  # still due when the 1h window runs out


def test_review_queue_parks_an_unclear_lead_with_ops_and_still_tasks_the_owner(
        sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, with_tiers(unclear={"escalation": "review_queue"}), ny(1, 0))
    add_team(sessions)
    with transaction(sessions) as session:
        team = session.get(Team, "us")
        assert team is not None
        team.ops_queue_id = "00GOPS"
    arrive(sessions, snapshot(at=ny(24, 8), source="web_form"), ctx)
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 12))
    every = rows(sessions)
    assert not [r for r in every if r.pattern == "sla"]
    [queued] = [r for r in every if r.action == "queue"]
    assert (queued.pattern, queued.to_owner, queued.rule_id) == ("first_response", "00GOPS", "intent.tiers.unclear")
    with transaction(sessions) as session:
        changes = select(OutboxRow).where(OutboxRow.action == "change_owner")
        owner_changes = [r.payload for r in session.scalars(changes)]
    assert [(c["from_owner_id"], c["to_owner_id"]) for c in owner_changes] == [("r1", "00GOPS")]
    assert [t.payload["owner_id"] for t in tasks(sessions)] == ["r1"]


def test_on_reassign_close_closes_the_old_owners_task_through_the_outbox(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    raw = policy_raw()
    raw["first_response"]["on_reassign"] = "close"
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    arrive(sessions, snapshot(at=ny(24, 8)), ctx)
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": (writer := FakeWriter())}), ny(24, 8).astimezone(UTC))
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 9, 30), writer)  # 150 %: reassigned
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), ny(24, 9, 30).astimezone(UTC))
    [update] = [v for v in writer.effects.values() if type(v).__name__ == "TaskUpdate"]
    assert (update.task_key, update.close, update.new_owner_id) == ("first-response:lead:1:task:r1", True, None)
    # the update waited for the owner change (a refused change leaves the task with its owner)
    order = [k for k in writer.calls if k.startswith("first-response") or k.endswith((":owner", ":task-update"))]
    assert [k.rsplit(":", 1)[-1] for k in order] == ["r1", "owner", "task-update"]


def test_one_task_per_lead_whatever_snapshots_and_progress_follow(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    arrive(sessions, snapshot(at=ny(24, 8)), ctx)
    arrive(sessions, snapshot(at=ny(24, 8, 5), owner="r2"), ctx)  # a human moves it: no second task
    assert [t.payload["owner_id"] for t in tasks(sessions)] == ["r1"]
    arrive(sessions, snapshot("00QLATE", at=ny(24, 8), owner=None), ctx)  # nobody owns it: no task yet
    assert len(tasks(sessions)) == 1
    arrive(sessions, snapshot("00QLATE", at=ny(24, 8, 20), owner="r3"), ctx)  # given an owner in the CRM
    assert [t.payload["owner_id"] for t in tasks(sessions)] == ["r1", "r3"]
    # due when the clock that started at arrival (08:00) breaches, not an hour from the owner change
    assert due(tasks(sessions)[1]) == ny(24, 9)


def test_recompute_moves_a_running_clock_onto_its_tiers_window_and_ladder(sessions: sessionmaker[Session]) -> None:
    from sidecar.engine.clocks import recompute

    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    arrive(sessions, snapshot(at=ny(24, 8), intent=Intent.HIGH), ctx)  # main ladder, 1h window
    v2 = apply_policy(sessions, with_tiers(high=HIGH_TIER), ny(24, 8, 5))
    with transaction(sessions) as session:
        assert recompute(session, ctx.book, ny(24, 8, 5).astimezone(UTC)) == 2  # the SLA and the stuck clock
        clock = session.scalars(select(Clock).where(Clock.kind == "sla")).one()
        assert (clock.policy_version, clock.ladder, clock.rule_id, clock.window_s, clock.consumed_s) == (
            v2, "high", "intent.tiers.high", 900, 300.0)
    run_minutes(sessions, ctx, ny(24, 8, 5), ny(24, 8, 25))
    # 5 minutes used before the change count: the tier's reminder at 10 and manager at 20 minutes
    assert [(r.rule_id, r.at) for r in rows(sessions) if r.pattern == "sla" and r.kind != "notification_ignored"] \
        == [("high.reminder", ny(24, 8, 10)), ("high.manager", ny(24, 8, 20))]
