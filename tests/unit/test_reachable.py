"""Startup steps wait out a database that is away (restarting), and only that."""

from __future__ import annotations

import logging
import socket

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from sidecar.store.reachable import until_reachable


def refused() -> OperationalError:
    """A real one: PostgreSQL's driver against a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/sidecar").connect()
    except OperationalError as exc:
        return exc
    raise AssertionError("something listens on the closed port")


def test_a_database_away_for_a_while_is_waited_for_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    failures, slept = [refused(), refused(), refused()], []  # type: ignore[var-annotated]

    def step() -> str:
        if failures:
            raise failures.pop()
        return "migrated"

    with caplog.at_level(logging.WARNING):
        assert until_reachable(step, "database unreachable at start", sleep=slept.append) == "migrated"
    assert slept == [1.0, 2.0, 4.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["database unreachable at start: cannot reach the database (connection refused); "
                        "retrying for up to 120 s"]


def test_a_database_that_stays_away_ends_the_start_after_the_bound() -> None:
    slept: list[float] = []

    def step() -> None:
        raise refused()

    with pytest.raises(OperationalError):
        until_reachable(step, "database unreachable at start", give_up_after=60, sleep=slept.append)
    assert sum(slept[:-1]) < 60 <= sum(slept) and max(slept) == 15.0


def test_a_sqlite_mistake_is_not_waited_for(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'sidecar.db'}")
    slept: list[float] = []

    def step() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    with pytest.raises(OperationalError, match="unable to open database file"):
        until_reachable(step, "database unreachable at start", sleep=slept.append)
    assert slept == []
