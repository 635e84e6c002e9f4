"""Leader locks: with several sidecars on one PostgreSQL, only one polls a CRM at a time.

SQLite means a single instance, so the lock is always granted there. On PostgreSQL a session-level
advisory lock is held on its own connection for the job's duration; a sidecar that does not get it
skips the job this round (the holder does the work), instead of waiting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
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
