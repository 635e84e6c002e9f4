"""Snapshots are applied a group at a time, in one savepoint (`sync.apply_snapshots`): what each
lead records must be exactly what applying it alone records, a failure anywhere in a group must be
isolated by the retry as before, and each event keeps the instant the engine saw it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.ports import ChangePage, Cursor
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead, LeadEvent
from sidecar.sync import PollStats, apply_page
from tests.support import add_team, apply_policy, context, ny, policy_raw, snapshot


@pytest.fixture
def statements(sessions: sessionmaker[Session]) -> Iterator[list[str]]:
    """Every SQL statement the store runs while the test does."""
    engine: Engine = sessions.kw["bind"]
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    yield seen
    event.remove(engine, "before_cursor_execute", note)


def test_events_keep_the_instant_the_engine_saw_them_written_with_their_insert(
        sessions: sessionmaker[Session], statements: list[str]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    now = ny(24, 8, 5).astimezone(UTC)
    page = ChangePage([snapshot(f"00Q{n}", at=ny(24, 8)) for n in range(12)], Cursor(ny(24, 8), ()))
    apply_page(sessions, context(), "salesforce", page, PollStats(), now)
    with transaction(sessions) as session:
        recorded = list(session.scalars(select(LeadEvent.recorded_at)))
    assert len(recorded) == 12 and set(recorded) == {now}
    assert not [s for s in statements if s.upper().startswith("UPDATE LEAD_EVENTS")]


def test_a_bad_snapshot_inside_a_group_is_audited_and_the_others_apply_once(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    bad = snapshot("00QBAD", at=ny(24, 8), created_at=datetime(2026, 11, 24, 8))  # naive: the store refuses it
    good = [snapshot(f"00Q{n}", at=ny(24, 8)) for n in range(4)]
    stats = PollStats()
    apply_page(sessions, context(), "salesforce", ChangePage([*good[:2], bad, *good[2:]], Cursor(ny(24, 8), ())),
               stats, ny(24, 8, 5).astimezone(UTC))
    with transaction(sessions) as session:
        leads = set(session.scalars(select(Lead.crm_id)))
        failed = [row.details["crm_id"] for row in session.scalars(
            select(AuditRow).where(AuditRow.kind == "ingest_failed"))]
        created = dict(session.execute(select(Lead.crm_id, func.count()).join(LeadEvent, LeadEvent.lead_id == Lead.id)
                                       .where(LeadEvent.kind == "created").group_by(Lead.crm_id)).all())
        events = session.scalar(select(func.count()).select_from(LeadEvent))
    assert leads == {s.crm_id for s in good} and failed == ["00QBAD"]
    assert created == {s.crm_id: 1 for s in good}
    assert stats.events == events  # what the rolled-back first attempt recorded is not counted
