"""The tick decides a batch in one go: a failing clock still fails alone, and a step already
recorded is never recorded (or its effects enqueued) twice, though keys are looked up per batch."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.evaluator import tick
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow
from tests.support import add_team, apply_policy, context, ingest, ny, policy_raw, snapshot


def counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with transaction(sessions) as session:
        return (session.scalar(select(func.count()).select_from(AuditRow).where(AuditRow.pattern == "sla")) or 0,
                session.scalar(select(func.count()).select_from(OutboxRow)) or 0)


def test_a_failing_clock_fails_alone_and_the_rest_of_its_batch_fires(sessions: sessionmaker[Session],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    for crm_id in ("00QA", "00QB", "00QC"):
        ingest(sessions, ctx, snapshot(crm_id, at=ny(24, 8)))  # 1h window: warnings due at 08:48
    with transaction(sessions) as session:  # B's clock is of a kind no pattern handles: it raises
        lead_b = session.scalars(select(Lead).where(Lead.crm_id == "00QB")).one()
        session.execute(update(Clock).where(Clock.lead_id == lead_b.id, Clock.kind == "sla").values(kind="nobody"))
    before = counts(sessions)
    caplog.set_level(logging.ERROR)
    fired = tick(sessions, ctx, ny(24, 8, 50), batch=10)
    assert fired["sla_breach_imminent"] == 2  # A and C
    assert "could not be evaluated" in caplog.text
    with transaction(sessions) as session:
        broken = session.scalars(select(Clock).where(Clock.kind == "nobody")).one()
        assert broken.steps_fired == 0 and broken.next_due_at == ny(24, 8, 48)  # left for the next tick
        warned = set(session.scalars(select(AuditRow.lead_id).where(AuditRow.kind == "sla_breach_imminent")))
    assert lead_b.id not in warned and len(warned) == 2
    assert counts(sessions)[0] == before[0] + 2


def test_a_step_already_recorded_is_not_recorded_again(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 8, 50))
    after_first = counts(sessions)
    with transaction(sessions) as session:  # as if the clock's advance had been lost: the step is due again
        session.execute(update(Clock).where(Clock.kind == "sla").values(
            steps_fired=0, next_due_at=ny(24, 8, 48)))
    tick(sessions, ctx, ny(24, 8, 50) + timedelta(seconds=1))
    assert counts(sessions) == after_first  # same audit row, same effects: nothing doubled


def test_a_batch_goes_in_as_one_insert_of_decisions_and_one_of_effects(sessions: sessionmaker[Session],
                                                                       engine: Engine) -> None:
    """The tick reserves the batch's ids (sidecar.store.ids), so no decision is flushed on its own;
    on SQLite the ids are the ones SQLite itself would have given (the audit's numbering unchanged)."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    for i in range(5):
        ingest(sessions, ctx, snapshot(f"00Q{i}", at=ny(24, 8)))
    with transaction(sessions) as session:
        last_audit = session.scalar(select(func.max(AuditRow.id))) or 0
        last_effect = session.scalar(select(func.max(OutboxRow.id))) or 0
    inserts: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT INTO"):
            inserts.append(statement.split()[2])

    event.listen(engine, "before_cursor_execute", note)
    try:
        fired = tick(sessions, ctx, ny(24, 8, 50), batch=10)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert fired["sla_breach_imminent"] == 5
    assert inserts.count("audit") == 1 and inserts.count("outbox") == 1
    with transaction(sessions) as session:
        decisions = list(session.scalars(select(AuditRow).where(AuditRow.id > last_audit).order_by(AuditRow.id)))
        effects = list(session.scalars(select(OutboxRow).where(OutboxRow.id > last_effect).order_by(OutboxRow.id)))
    assert len(decisions) == 5 and len(effects) == 5
    assert [effect.audit_id for effect in effects] == [row.id for row in decisions]  # each warning's own effect
    if engine.dialect.name == "sqlite":
        assert [row.id for row in decisions] == list(range(last_audit + 1, last_audit + 6))
        assert [effect.id for effect in effects] == list(range(last_effect + 1, last_effect + 6))
