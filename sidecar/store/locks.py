"""Leader locks: with several sidecars on one PostgreSQL, only one polls a CRM at a time.

A job run takes its lock with `pg_try_advisory_lock` and lets it go when the run ends; PostgreSQL
also lets it go when the holder's connection ends, so a leader that dies (even by SIGKILL) is
replaced at the next run of the job on any other sidecar: takeover within one interval.

SQLite means a single instance (`single_instance` refuses a second `sidecar run` on the same file),
so the lock is always granted there. On PostgreSQL a session-level
advisory lock is held on its own connection for the job's duration; a sidecar that does not get it
skips the job this round (the holder does the work), instead of waiting.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def leader_lock(sessions: sessionmaker[Session], name: str) -> Iterator[bool]:
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as connection:
        key = lock_key(name)
        # A leader cut off by the network (no FIN, unlike a killed process) would keep its lock until
        # TCP gives up, by default after hours; with these the server drops it within ~25 s (TCP only).
        connection.execute(text("SELECT set_config('tcp_keepalives_idle', '10', false), "
                                "set_config('tcp_keepalives_interval', '5', false), "
                                "set_config('tcp_keepalives_count', '3', false)"))
        granted = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        try:
            yield granted
        finally:
            if granted:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except Exception:  # never hand a connection still holding the lock back to the pool:
                    connection.invalidate()  # closing it makes PostgreSQL release the lock
                    raise
            connection.rollback()


def lock_leads(session: Session, crm: str, crm_ids: Iterable[str]) -> None:
    """Hold these leads for the rest of `session`'s transaction (PostgreSQL): two sidecars applying
    the same lead (one polling, one draining webhooks) then apply one after the other, and the
    second sees what the first wrote instead of deciding the same events again. Taken in key
    order, so two transactions holding several leads never wait on each other in a circle.
    SQLite has one writer at a time, so there is nothing to do."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({lock_key(f"lead:{crm}:{crm_id}") for crm_id in crm_ids})
    if keys:
        ordered = "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) s"
        session.execute(text(ordered), {"keys": keys})


def one_at_a_time(session: Session, name: str) -> None:
    """Wait for any other sidecar inside the same step (`name`) and hold it for the rest of this
    transaction (PostgreSQL). For short steps whose result depends on seeing all candidates at once,
    such as grouping one recipient's due warnings into one digest."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})


class AnotherInstance(RuntimeError):
    """A second `sidecar run` on the same SQLite file; the message says what to do instead."""


@contextmanager
def single_instance(engine: Engine) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite file for as long as the block runs (the whole
    `sidecar run`), so a second process on the same file is refused at start instead of sharing
    the file: SQLite has no row locks, so two of them would claim and perform the same effects.

    An OS file lock (flock on `<file>.lock`) is released by the kernel when the process dies, even
    by SIGKILL, so a crash never leaves a stale lock behind. The holder writes its pid into the
    file for the refusal message. PostgreSQL (and in-memory SQLite) need no such lock.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        yield
        return
    path = Path(f"{database}.lock")
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            raise AnotherInstance(f"another sidecar is already running on {Path(database).name} (pid {pid}); "
                                  "SQLite allows one instance — use PostgreSQL for several") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
