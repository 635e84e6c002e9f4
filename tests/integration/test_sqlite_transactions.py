"""Transactions that really roll back (savepoints included), and one process's own threads never
seeing "database is locked" on SQLite. Run on PostgreSQL too (CI), where they must hold the same."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.store.db import reading, transaction
from sidecar.store.models import IntakeItem, SyncCursor

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class Rollback(Exception):
    pass


def intake(crm_id: str) -> IntakeItem:
    return IntakeItem(crm="salesforce", delivery_id=crm_id, crm_id=crm_id, received_at=T0)


def stored(sessions: sessionmaker[Session]) -> list[str]:
    with transaction(sessions) as session:
        return sorted(session.scalars(select(IntakeItem.crm_id)))


def test_a_released_savepoint_is_undone_by_the_outer_rollback(sessions: sessionmaker[Session]) -> None:
    # The savepoint is the transaction's first statement, as in the tick (reads, then a savepoint per
    # clock): pysqlite had opened no transaction yet, so SAVEPOINT began one and RELEASE committed it.
    with pytest.raises(Rollback), transaction(sessions) as session:
        with session.begin_nested():
            session.add(intake("in-savepoint"))
        session.add(intake("outer"))
        session.flush()
        raise Rollback
    assert stored(sessions) == []


def test_a_savepoint_rolls_back_alone_and_the_outer_transaction_commits(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        session.add(intake("before"))
        session.flush()
        with pytest.raises(Rollback), session.begin_nested():
            session.add(intake("undone"))
            session.flush()
            raise Rollback
        with session.begin_nested():  # a later savepoint in the same transaction still works
            session.add(intake("after"))
    assert stored(sessions) == ["after", "before"]


def test_nested_savepoints_release_into_their_parent(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        with pytest.raises(Rollback), session.begin_nested():
            session.add(intake("outer-savepoint"))
            with session.begin_nested():
                session.add(intake("inner-savepoint"))
            raise Rollback  # the inner one was released into the outer savepoint: both go
        session.add(intake("kept"))
    assert stored(sessions) == ["kept"]


JOBS = ("poll", "drain_webhooks", "evaluate", "dispatch", "directory_sync", "web")


def test_a_burst_of_concurrent_jobs_sees_no_database_locked(sessions: sessionmaker[Session]) -> None:
    """Six threads like the scheduler's jobs and the web receivers, each running read-then-write
    transactions in a savepoint, as the tick and the intake do (read the cursor, then move it; count
    the intake, then add to it), as fast as they can. Before the fix the SAVEPOINT opened a deferred
    transaction behind pysqlite's back, and its first write was refused at once ("database is
    locked", busy_timeout not consulted) when another thread had committed since its read."""
    rounds = 60
    errors: list[BaseException] = []
    start = threading.Barrier(len(JOBS))

    def job(name: str) -> None:
        start.wait()
        try:
            for n in range(rounds):
                with transaction(sessions) as session, session.begin_nested():  # as the tick does
                    cursor = session.get(SyncCursor, (name, "leads"))
                    count = session.scalar(select(func.count()).select_from(IntakeItem))
                    if cursor is None:
                        cursor = SyncCursor(crm=name, stream="leads", cursor_at=None, cursor_ids=[],
                                            last_poll_at=None)
                        session.add(cursor)
                    cursor.last_poll_at = T0 + timedelta(seconds=n)
                    session.add(intake(f"{name}-{n}-{count}"))
        except BaseException as exc:  # collected: the assertion below names them
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(name,)) for name in JOBS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(stored(sessions)) == rounds * len(JOBS)
    with transaction(sessions) as session:
        assert {row.crm: row.last_poll_at for row in session.scalars(select(SyncCursor))} == \
            dict.fromkeys(JOBS, T0 + timedelta(seconds=rounds - 1))


def test_a_reader_answers_while_a_writer_holds_its_transaction(sessions: sessionmaker[Session]) -> None:
    """/healthz reads through `reading`: it must not queue behind a job's long write transaction."""
    with transaction(sessions) as session:
        session.add(intake("committed"))
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with transaction(sessions) as session:
            session.add(intake("uncommitted"))
            session.flush()
            writing.set()
            release.wait(timeout=60)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(timeout=30)
        with reading(sessions) as session:  # would wait for `release` if it queued for the write lock
            assert list(session.scalars(select(IntakeItem.crm_id))) == ["committed"]
        assert thread.is_alive()  # the writer was still holding its transaction while we read
    finally:
        release.set()
        thread.join(timeout=60)
    assert stored(sessions) == ["committed", "uncommitted"]
