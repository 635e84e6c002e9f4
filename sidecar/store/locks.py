"""Leader locks: with several sidecars on one PostgreSQL, only one polls a CRM at a time.

SQLite means a single instance (`single_instance` refuses a second `sidecar run` on the same file),
so the lock is always granted there. On PostgreSQL a session-level
advisory lock is held on its own connection for the job's duration; a sidecar that does not get it
skips the job this round (the holder does the work), instead of waiting.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
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
        granted = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        try:
            yield granted
        finally:
            if granted:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.rollback()


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
