"""Compliance hold (seed 000 pattern 4): hold on a flag, no SLA or stuck step while held, clear with a
full window and the owner told, reject to DISQUALIFIED_COMPLIANCE with the reason; aging items are
re-surfaced once a day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import jobs, review_queue
from sidecar.domain import LeadSnapshot
from sidecar.engine import patterns
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.compliance_decisions import ComplianceError, decide, resurface
from sidecar.engine.patterns.shared import EngineContext
from sidecar.ingest import apply_snapshot
from sidecar.jobs import Runtime
from sidecar.outbox import Ports, dispatch
from sidecar.ports import LeadUpdate, NoteRequest, TaskRequest
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, ReviewItem
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ny, policy_raw, snapshot


def arrive(sessions: sessionmaker[Session], ctx: EngineContext, snap: LeadSnapshot, now: datetime) -> None:
    """Apply a snapshot the way poll and webhook drains do: ingest, then the event-driven patterns."""
    with transaction(sessions) as session:
        patterns.on_applied(session, ctx, apply_snapshot(session, ctx.book, snap), now.astimezone(UTC))


def rows(sessions: sessionmaker[Session], **where: Any) -> list[AuditRow]:
    with transaction(sessions) as session:
        query = select(AuditRow).order_by(AuditRow.id)
        for name, value in where.items():
            query = query.where(getattr(AuditRow, name) == value)
        return list(session.scalars(query))


def effects(sessions: sessionmaker[Session], audit_id: int) -> dict[str, OutboxRow]:
    with transaction(sessions) as session:
        return {row.idempotency_key: row for row in session.scalars(
            select(OutboxRow).where(OutboxRow.audit_id == audit_id))}


def lead_clocks(sessions: sessionmaker[Session]) -> list[Clock]:
    with transaction(sessions) as session:
        return list(session.scalars(select(Clock).order_by(Clock.id)))


def setup(sessions: sessionmaker[Session], **changes: Any) -> EngineContext:
    ctx = context()
    apply_policy(sessions, policy_raw(**changes), ny(1, 0))
    add_team(sessions)
    return ctx


def test_a_flagged_lead_is_held_queued_and_both_owner_and_compliance_are_told(
        sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    arrive(sessions, ctx, snapshot(at=ny(24, 8), flags=frozenset({"sanctions_match", "newsletter"})), ny(24, 8))
    [hold] = rows(sessions, pattern="compliance")
    assert (hold.kind, hold.action, hold.rule_id, hold.details["criteria"]) == (
        "compliance_hold", "hold", "compliance.hold", ["sanctions_match"])
    with transaction(sessions) as session:
        [item] = review_queue.items(session, review_queue.COMPLIANCE)
        assert (item.reason, item.details["criteria"], item.opened_at) == (
            "compliance hold", ["sanctions_match"], ny(24, 8))
    assert [(c.kind, c.status) for c in lead_clocks(sessions)] == [("sla", "paused"), ("stuck", "paused")]
    out = effects(sessions, hold.id)
    notifier, writer = FakeNotifier(), FakeWriter()
    dispatch(sessions, Ports(notifier, {"salesforce": writer}), ny(24, 8).astimezone(UTC))
    [update] = [e for e in writer.effects.values() if isinstance(e, LeadUpdate)]
    assert (update.crm_status, update.expect_status, update.lead.crm_id) == ("Compliance Hold", None, "00Q1")
    told = {n.persona.value: n for n in notifier.sent.values()}
    assert set(told) == {"owner", "compliance"} and len(out) == 3
    assert told["owner"].recipient_email == "r1@example.com"
    assert "Do not work this lead yet" in told["owner"].extra["reason"]
    compliance = told["compliance"]
    assert (compliance.via, compliance.channel) == ("channel", "#compliance-review")
    reason = compliance.extra["reason"]
    assert "Matched: sanctions_match" in reason and "aisha@example.com" in reason and "Emirates Group" in reason
    assert compliance.lead.record_url.endswith("/00Q1/view") and compliance.lead.company == "Emirates Group"
    # The same flags on every later snapshot decide nothing again.
    arrive(sessions, ctx, snapshot(at=ny(24, 8, 5), status="Compliance Hold",
                                   flags=frozenset({"sanctions_match"})), ny(24, 8, 5))
    assert len(rows(sessions, pattern="compliance")) == 1


def test_no_sla_or_stuck_step_fires_while_held_and_clearing_restarts_a_full_window(
        sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    arrive(sessions, ctx, snapshot(at=ny(24, 8)), ny(24, 8))
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))  # 80 % of the 1 h window: the imminent warning
    assert [r.kind for r in rows(sessions, pattern="sla")] == ["sla_breach_imminent"]
    # The flag appears later (a sanctions screening result): held from then on.
    arrive(sessions, ctx, snapshot(at=ny(24, 8, 50), flags=frozenset({"pep"})), ny(24, 8, 50))
    # Even the CRM still saying NEW (the hold's status write not landed) keeps the clocks paused.
    arrive(sessions, ctx, snapshot(at=ny(24, 9, 0), status="Working - Contacted", flags=frozenset({"pep"})),
           ny(24, 9))
    arrive(sessions, ctx, snapshot(at=ny(24, 9, 1), status="Open - Not Contacted", flags=frozenset({"pep"})),
           ny(24, 9, 1))
    at = ny(24, 8, 50)
    while at <= ny(27, 18):  # three business days of ticks: nothing may fire
        tick(sessions, ctx, at.astimezone(UTC))
        at += timedelta(minutes=10)
    assert [r.kind for r in rows(sessions) if r.pattern in ("sla", "stuck")] == ["sla_breach_imminent"]
    assert all(c.status in ("paused", "closed") for c in lead_clocks(sessions))
    cleared_at = ny(30, 10)  # Monday
    with transaction(sessions) as session:
        row = decide(session, ctx, "salesforce", "00Q1", "clear", "alice", "false positive: different person",
                     cleared_at.astimezone(UTC))
        row_id = row.id
    [cleared] = rows(sessions, kind="compliance_cleared")
    assert (cleared.id, cleared.actor, cleared.action, cleared.details["reason"]) == (
        row_id, "alice", "update", "false positive: different person")
    assert cleared.details["time_in_review_s"] == int((ny(30, 10) - ny(24, 8, 50)).total_seconds())
    running = [c for c in lead_clocks(sessions) if c.status == "open"]
    assert [(c.kind, c.state, c.started_at, c.consumed_s, c.steps_fired) for c in running] == [
        ("sla", "NEW", cleared_at, 0.0, 0), ("stuck", "NEW", cleared_at, 0.0, 0)]
    assert running[0].next_due_at == ny(30, 10, 48)  # a full hour again: 80 % at 10:48, not at once
    notifier, writer = FakeNotifier(), FakeWriter()
    dispatch(sessions, Ports(notifier, {"salesforce": writer}), cleared_at.astimezone(UTC))
    updates = [e for e in writer.effects.values() if isinstance(e, LeadUpdate)]
    assert [(u.crm_status, u.expect_status) for u in updates] == [
        ("Compliance Hold", None), ("Open - Not Contacted", "Compliance Hold")]
    [owner] = [n for k, n in notifier.sent.items() if k.startswith("review:") and n.persona.value == "owner"]
    assert (owner.kind, owner.recipient_email) == ("compliance_cleared", "r1@example.com")
    assert owner.due_at == ny(30, 11).astimezone(UTC) and "you can work it now" in owner.extra["reason"]
    assert tick(sessions, ctx, ny(30, 10, 47).astimezone(UTC)) == {}
    assert tick(sessions, ctx, ny(30, 10, 48).astimezone(UTC)) == {"sla_breach_imminent": 1}
    with transaction(sessions) as session:
        assert review_queue.items(session, review_queue.COMPLIANCE) == []
        assert session.scalars(select(Lead)).one().state == "NEW"


def test_a_rejected_lead_goes_to_disqualified_compliance_with_the_reason(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    arrive(sessions, ctx, snapshot(at=ny(24, 8), flags=frozenset({"adverse_media"})), ny(24, 8))
    with transaction(sessions) as session:
        decide(session, ctx, "salesforce", "00Q1", "reject", "bob", "confirmed match on the EU sanctions list",
               ny(24, 11).astimezone(UTC))
    [rejected] = rows(sessions, kind="compliance_rejected")
    assert (rejected.actor, rejected.details["crm_status"]) == ("bob", "Disqualified - Compliance")
    writer = FakeWriter()
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), ny(24, 11).astimezone(UTC))
    updates = [e for e in writer.effects.values() if isinstance(e, LeadUpdate)]
    assert [(u.crm_status, u.reason) for u in updates] == [
        ("Compliance Hold", None), ("Disqualified - Compliance", "confirmed match on the EU sanctions list")]
    [note] = [e for e in writer.effects.values() if isinstance(e, NoteRequest)]
    assert note.body == "Disqualified by compliance (bob): confirmed match on the EU sanctions list"
    assert all(c.status == "closed" and c.close_reason == "compliance_reject" for c in lead_clocks(sessions))
    with transaction(sessions) as session:
        item = session.scalars(select(ReviewItem)).one()
        assert (item.resolved_by, item.resolution) == ("bob", "rejected: confirmed match on the EU sanctions list")
        assert session.scalars(select(Lead)).one().state == "DISQUALIFIED_COMPLIANCE"
    try:  # decided once: a second decision is refused with a reason
        with transaction(sessions) as session:
            decide(session, ctx, "salesforce", "00Q1", "clear", "bob", "oops", ny(24, 12).astimezone(UTC))
        raise AssertionError("a second decision was accepted")
    except ComplianceError as exc:
        assert "not on compliance hold" in str(exc)


def test_an_unlicensed_jurisdiction_holds_a_lead_without_any_flag(sessions: sessionmaker[Session]) -> None:
    raw = policy_raw()
    raw["compliance"]["licensed_jurisdictions"] = {"TEST": ["US", "CA"]}
    ctx = context()
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    arrive(sessions, ctx, snapshot("00QUS", at=ny(24, 8), country="us"), ny(24, 8))
    arrive(sessions, ctx, snapshot("00QIR", at=ny(24, 8), country="IR"), ny(24, 8))
    [hold] = rows(sessions, pattern="compliance")
    assert hold.details["criteria"] == ["unlicensed_jurisdiction"] and hold.details["country"] == "IR"


def test_aging_items_are_resurfaced_to_compliance_once_a_day(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)  # resurface_after: 2bd = 20 business hours in the TEST market (08:00-18:00)
    arrive(sessions, ctx, snapshot(at=ny(24, 8), flags=frozenset({"pep"})), ny(24, 8))  # Tue 08:00
    rt = Runtime(sessions, ctx, {}, Ports(FakeNotifier(), {"salesforce": FakeWriter()}))
    at = ny(24, 8).astimezone(UTC)
    while at <= ny(30, 12).astimezone(UTC):  # hourly, like the scheduler's "reviews" job
        jobs.resurface_reviews(rt, at)
        at += timedelta(hours=1)
    surfaced = rows(sessions, kind="compliance_review_aging")
    # 20 business hours are up on Wed 18:00; then every 24 h (the weekend too: holds keep waiting).
    assert [r.at for r in surfaced] == [ny(day, 18).astimezone(UTC) for day in (25, 26, 27, 28, 29)]
    with transaction(sessions) as session:
        assert resurface(session, ctx, ny(29, 18, 30).astimezone(UTC)) == 0  # same day again: nothing
    notes = effects(sessions, surfaced[0].id)
    [message] = [row.payload for row in notes.values()]
    assert (message["persona"], message["channel"]) == ("compliance", "#compliance-review")
    assert "Waiting for a compliance decision for 1.4 days" in message["extra"]["reason"]


def test_a_held_lead_is_not_assigned_and_a_cleared_unowned_lead_gets_its_first_owner(
        sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions, assignment={"enabled": True, "rules": [{"id": "assign.test", "team": "us"}]})
    arrive(sessions, ctx, snapshot(at=ny(24, 8), owner=None, flags=frozenset({"pep"})), ny(24, 8))
    assert jobs.evaluate(Runtime(sessions, ctx, {}, Ports(None, {})), ny(24, 9).astimezone(UTC)) == {}
    with transaction(sessions) as session:
        assert session.scalars(select(Lead)).one().owner_id is None
        decide(session, ctx, "salesforce", "00Q1", "clear", "alice", "cleared", ny(24, 10).astimezone(UTC))
    [cleared] = rows(sessions, kind="compliance_cleared")
    [assigned] = rows(sessions, kind="lead_assigned")
    assert cleared.details["assigned_to"] == assigned.to_owner == "r1"
    notifier = FakeNotifier()
    dispatch(sessions, Ports(notifier, {"salesforce": FakeWriter()}), ny(24, 10).astimezone(UTC))
    told = [n for n in notifier.sent.values() if n.kind == "compliance_cleared"]
    assert [(n.persona.value, n.recipient_email) for n in told] == [("owner", "r1@example.com")]


def test_a_lead_held_on_arrival_gets_its_first_response_task_when_cleared(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    arrive(sessions, ctx, snapshot(at=ny(24, 8), flags=frozenset({"pep"})), ny(24, 8))
    with transaction(sessions) as session:  # held from arrival: a rep must not work it, so no task yet
        assert session.scalars(select(OutboxRow).where(OutboxRow.action == "create_task")).all() == []
    cleared_at = ny(24, 14)
    with transaction(sessions) as session:
        decide(session, ctx, "salesforce", "00Q1", "clear", "alice", "false positive", cleared_at.astimezone(UTC))
    [task] = rows(sessions, pattern="first_response")
    assert (task.at, task.owner_id, task.action) == (cleared_at, "r1", "task")
    # Due when the fresh window that starts at the clear runs out (1 h of business time), not at arrival.
    assert task.details["due_at"] == ny(24, 15).astimezone(UTC).isoformat()
    writer = FakeWriter()
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), cleared_at.astimezone(UTC))
    assert [(k, e.owner_id) for k, e in writer.effects.items() if isinstance(e, TaskRequest)] == [
        ("first-response:lead:1:task:r1", "r1")]
