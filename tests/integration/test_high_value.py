"""High-value acceleration (seed 000 pattern 3): flags on crossing, once per crossing, and acts."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.slack.messages import build_message
from sidecar.domain import Persona
from sidecar.engine import clocks
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.revert import revert_reassignment
from sidecar.outbox import Ports, dispatch
from sidecar.ports import TaskRequest, TaskUpdate
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, Rep
from tests.pattern_support import feed
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ny, policy_raw, snapshot


def setup(sessions: sessionmaker[Session]) -> EngineContext:
    """Team "us": r1 and r3 junior (seniority 1), r2 senior (3); a VP for strategic accounts."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    with transaction(sessions) as session:
        rep = session.get(Rep, "r2")
        assert rep is not None
        rep.seniority = 3
        session.add(Rep(id="vp1", crm="salesforce", name="Vera VP", email="vp@example.com", team_id="us", role="vp"))
    return ctx


def flags(sessions: sessionmaker[Session]) -> list[AuditRow]:
    with transaction(sessions) as session:
        rows = list(session.scalars(select(AuditRow).where(AuditRow.pattern == "high_value",
                                                          AuditRow.kind == "high_value_flag").order_by(AuditRow.id)))
        session.expunge_all()
        return rows


def sent(sessions: sessionmaker[Session], at: datetime) -> tuple[FakeNotifier, FakeWriter]:
    notifier, writer = FakeNotifier(), FakeWriter()
    dispatch(sessions, Ports(notifier, {"salesforce": writer}), at.astimezone(UTC))
    return notifier, writer


def test_a_score_oscillating_around_the_threshold_flags_once(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    base = snapshot(at=ny(24, 8), owner="r2", score=50.0)
    feed(sessions, ctx, base)
    for minute, score in enumerate((86.0, 84.0, 88.0, 80.0, 90.0, 76.0, 85.0), start=1):
        feed(sessions, ctx, replace(base, crm_modified_at=ny(24, 8, minute), score=score))
    assert len(flags(sessions)) == 1  # 86 flagged; it never fell below 85 - 10 = 75
    assert flags(sessions)[0].details["criteria"] == ["score 86 >= 85"]
    feed(sessions, ctx, replace(base, crm_modified_at=ny(24, 8, 20), score=70.0))  # well below: re-armed
    feed(sessions, ctx, replace(base, crm_modified_at=ny(24, 8, 21), score=86.0))
    rows = flags(sessions)
    assert len(rows) == 2 and rows[1].at == ny(24, 8, 21)
    with transaction(sessions) as session:
        assert session.scalars(select(AuditRow.kind).where(AuditRow.kind == "high_value_rearmed")).all() == [
            "high_value_rearmed"]


def test_a_crossing_tells_owner_and_manager_and_gives_a_junior_owners_lead_to_a_senior_rep(
        sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    base = snapshot(at=ny(24, 8), owner="r1", score=40.0)
    feed(sessions, ctx, base)
    feed(sessions, ctx, replace(base, crm_modified_at=ny(24, 8, 10), score=91.0))
    [row] = flags(sessions)
    assert (row.action, row.to_owner, row.rule_id) == ("reassign", "r2", "high_value")
    assert row.details["from_owner"] == "r1" and row.details["strategy"] == "seniority"
    assert row.details["owner_seniority"] == 1 and row.details["window_factor"] == 0.5
    notifier, writer = sent(sessions, ny(24, 8, 10))
    change = writer.effects[f"{row.step_key}:owner"]
    assert (change.from_owner_id, change.to_owner_id) == ("r1", "r2")
    told = {n.persona: n for n in notifier.sent.values() if n.kind == "high_value_flag"}
    assert set(told) == {Persona.OWNER, Persona.MANAGER, Persona.NEW_OWNER}  # not strategic: no VP
    assert told[Persona.OWNER].recipient_email == "r1@example.com"
    assert told[Persona.OWNER].extra["priority"] == "high" and "score 91 >= 85" in told[Persona.OWNER].extra["criteria"]
    assert told[Persona.MANAGER].channel == "#sales-us" and told[Persona.MANAGER].reassignment
    assert told[Persona.NEW_OWNER].recipient_email == "r2@example.com"
    owner_key = next(k for k, n in notifier.sent.items() if n is told[Persona.OWNER])
    rendered = json.dumps(build_message(told[Persona.OWNER], owner_key).blocks)
    assert "High-value lead" in rendered and "score 91 &gt;= 85" in rendered and "Rep r2 (senior)" in rendered
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead)).one()
        assert lead.owner_id == "r2" and lead.high_value_at is not None
        back = revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "r1 is on it", ny(24, 8, 20))
        assert back.details["reverts_audit_id"] == row.id and lead.owner_id == "r1"


def test_a_senior_owner_keeps_the_lead(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    feed(sessions, ctx, snapshot(at=ny(24, 8), owner="r2", deal_size=250000.0))
    [row] = flags(sessions)
    assert (row.action, row.to_owner) == ("notify", None)
    assert row.details["criteria"] == ["deal size 250000 >= 100000"]  # arrived already high-value


def test_later_state_windows_are_tightened_by_the_factor_and_other_leads_keep_theirs(
        sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    hot = snapshot("00QHOT", at=ny(24, 8), owner="r2", score=95.0)
    cold = snapshot("00QCOLD", at=ny(24, 8), owner="r3", score=20.0)
    for snap in (hot, cold):
        feed(sessions, ctx, snap)
        feed(sessions, ctx, replace(snap, crm_modified_at=ny(24, 9), crm_status="Working - Contacted",
                                    status_changed_at=ny(24, 9)))
    with transaction(sessions) as session:
        def clocks_of(crm_id: str, kind: str = "sla") -> list[Clock]:
            lead = session.scalars(select(Lead).where(Lead.crm_id == crm_id)).one()
            return list(session.scalars(select(Clock).where(Clock.lead_id == lead.id, Clock.kind == kind)
                                        .order_by(Clock.id)))

        new_hot, contacted_hot = clocks_of("00QHOT")
        assert (new_hot.window_s, new_hot.window_factor) == (3600, None)  # the state it was flagged in: untouched
        two_business_days = 2 * 10 * 3600  # TEST market: 08:00-18:00
        assert (contacted_hot.window_s, contacted_hot.base_window_s, contacted_hot.window_factor) == (
            two_business_days // 2, two_business_days, 0.5)
        # Only SLA windows tighten: the stuck-lead clock of the flagged lead keeps the state's window.
        assert [(c.window_s, c.window_factor) for c in clocks_of("00QHOT", "stuck")] == [
            (3600, None), (two_business_days, None)]
        _new_cold, contacted_cold = clocks_of("00QCOLD")
        assert (contacted_cold.window_s, contacted_cold.base_window_s, contacted_cold.window_factor) == (
            two_business_days, None, None)
    # 80 % of the tightened 10 business hours from Tue 09:00 is Tue 17:00; the cold lead is not due until Wed.
    tick(sessions, ctx, ny(24, 17, 1).astimezone(UTC))
    with transaction(sessions) as session:
        [warning] = session.scalars(select(AuditRow).where(AuditRow.kind == "sla_breach_imminent")).all()
        assert warning.window_s == 36000 and warning.details["due_at"] == ny(24, 17).astimezone(UTC).isoformat()
        assert (warning.details["base_window_s"], warning.details["window_factor"]) == (72000, 0.5)


def test_a_strategic_account_is_dm_ed_to_the_regional_vp(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    feed(sessions, ctx, snapshot(at=ny(24, 8), owner="r2", tier="strategic"))
    [row] = flags(sessions)
    assert row.details["strategic"] is True and row.details["criteria"] == ["tier strategic"]
    notifier, _writer = sent(sessions, ny(24, 8))
    [vp] = [n for n in notifier.sent.values() if n.persona is Persona.REGIONAL_VP]
    assert (vp.via, vp.recipient_email, vp.kind) == ("slack_dm", "vp@example.com", "high_value_flag")


def test_with_on_reassign_close_the_senior_rep_gets_a_task_of_their_own(sessions: sessionmaker[Session]) -> None:
    # Close mode closes the junior's open first-response task: the senior must not be left with none.
    ctx = setup(sessions)
    raw = policy_raw()
    raw["first_response"]["on_reassign"] = "close"
    apply_policy(sessions, raw, ny(2, 0))
    base = snapshot(at=ny(24, 8), owner="r1", score=40.0)
    feed(sessions, ctx, base)
    feed(sessions, ctx, replace(base, crm_modified_at=ny(24, 8, 10), score=91.0))
    [row] = flags(sessions)
    assert row.to_owner == "r2"
    _, writer = sent(sessions, ny(24, 8, 10))
    closed = [u for u in writer.effects.values() if isinstance(u, TaskUpdate)]
    assert [(u.close, u.new_owner_id) for u in closed] == [(True, None)]
    tasks = {k: t for k, t in writer.effects.items() if isinstance(t, TaskRequest) and t.owner_id == "r2"}
    [task] = tasks.values()
    assert task.subject.startswith("High-value lead:") and task.due_tz == "America/New_York"
    with transaction(sessions) as session:
        clock = session.scalars(select(Clock).where(Clock.kind == "sla", Clock.status == "open")).one()
        assert task.due_at == clocks.breach_at(clock, ctx.book, session)  # the senior's (tightened) deadline
