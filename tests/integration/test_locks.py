from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sidecar.store.locks import leader_lock, lock_key


def test_only_one_holder_of_a_leader_lock_on_postgres(engine: Engine, sessions: sessionmaker[Session]) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are a PostgreSQL feature; SQLite runs a single instance")
    with engine.connect() as other:  # another sidecar holds the poll lock
        assert other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key("poll:hubspot")}).scalar()
        with leader_lock(sessions, "poll:hubspot") as leader:
            assert leader is False
        with leader_lock(sessions, "poll:salesforce") as leader:
            assert leader is True
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key("poll:hubspot")})
        other.rollback()
    with leader_lock(sessions, "poll:hubspot") as leader:
        assert leader is True


def test_sqlite_is_a_single_instance_so_the_lock_is_always_granted(engine: Engine,
                                                                  sessions: sessionmaker[Session]) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("covered by the PostgreSQL test")
    with leader_lock(sessions, "poll:x") as first, leader_lock(sessions, "poll:x") as second:
        assert first and second
