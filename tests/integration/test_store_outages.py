"""The store under trouble (issue 15, item 7): SQLite's disk full is one clear line and leaves the
store intact and consistent; PostgreSQL connections killed under us are replaced without an operator."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sidecar.cli_errors import explain
from sidecar.failures import describe
from sidecar.store.db import make_engine, session_factory, transaction
from sidecar.store.models import AuditRow, Lead, LeadEvent
from tests.pattern_support import feed
from tests.support import add_team, apply_policy, context, ny, policy_raw, snapshot

ON_POSTGRES = bool(os.environ.get("SIDECAR_TEST_DATABASE_URL"))


def _leads(sessions: sessionmaker[Session]) -> int:
    with transaction(sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Lead)) or 0)


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's own limit stands in for a full disk")
def test_sqlite_disk_full_is_one_clear_line_and_the_store_stays_intact(database_url: str, engine: Engine) -> None:
    sessions = session_factory(engine)
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    for i in range(5):
        feed(sessions, ctx, snapshot(f"00QOK{i}", at=ny(24, 8)))
    with engine.connect() as connection:
        pages = int(connection.exec_driver_sql("PRAGMA page_count").scalar_one())
    engine.dispose()

    # The file may not grow by a single page any more: what a full volume does to SQLite.
    full = make_engine(database_url)
    event.listen(full, "connect", lambda dbapi, _record: dbapi.execute(f"PRAGMA max_page_count = {pages}"))
    full_sessions = session_factory(full)
    with pytest.raises(OperationalError) as raised:
        for i in range(200):  # each lead brings clocks, events and audit rows: the file must grow
            feed(full_sessions, ctx, snapshot(f"00QFULL{i:03}", at=ny(24, 8, 30), name="x" * 250))
    full.dispose()
    for line in (describe(raised.value), explain(raised.value)):
        assert "\n" not in line and "disk is full" in line and "free space" in line and "intact" in line
        assert "INSERT" not in line and "[SQL" not in line  # no statement dump

    reopened = make_engine(database_url)
    with reopened.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
        assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    sessions = session_factory(reopened)
    with transaction(sessions) as session:
        ids = set(session.scalars(select(Lead.crm_id)))
        # Whole leads or nothing: every lead stored has its creation event (no half-written lead).
        created = set(session.scalars(select(Lead.crm_id).join(LeadEvent, LeadEvent.lead_id == Lead.id)
                                      .where(LeadEvent.kind == "created")))
        assert not session.scalars(select(AuditRow).where(AuditRow.kind == "ingest_failed")).first()
    assert {f"00QOK{i}" for i in range(5)} <= ids and ids == created
    # With space again, the lead that did not fit is applied on the next run.
    missing = next(f"00QFULL{i:03}" for i in range(200) if f"00QFULL{i:03}" not in ids)
    feed(sessions, ctx, snapshot(missing, at=ny(24, 8, 30)))
    assert _leads(sessions) == len(ids) + 1
    reopened.dispose()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (SIDECAR_TEST_DATABASE_URL)")
def test_postgres_connections_killed_by_a_restart_are_replaced_by_the_next_job(engine: Engine) -> None:
    """A server restart kills every connection in the pool; pool_pre_ping finds them dead and the
    next job opens fresh ones. Simulated with pg_terminate_backend on this test's own database (the
    shared server is never restarted)."""
    sessions = session_factory(engine)
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    feed(sessions, ctx, snapshot("00QBEFORE", at=ny(24, 8)))
    with engine.connect() as connection:
        before = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = make_engine(os.environ["SIDECAR_TEST_DATABASE_URL"])
    with admin.connect() as connection:
        killed = connection.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid = :pid"), {"pid": before}
        ).scalar_one()
    admin.dispose()
    assert killed == 1
    feed(sessions, ctx, snapshot("00QAFTER", at=ny(24, 8) + timedelta(minutes=5)))  # no error: reconnected
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != before
    assert _leads(sessions) == 2
