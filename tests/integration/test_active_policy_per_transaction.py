"""PolicyBook.active reads the active version once per transaction (the drain asks per lead), and
activating a version in that transaction, or any later transaction, sees the new one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.policies import PolicyBook
from sidecar.policy import validate_policy
from sidecar.policy.version import record_version
from sidecar.store.db import transaction
from tests.support import apply_policy, ny, policy_raw


def window_of(window: str) -> dict[str, Any]:
    """The test policy with another TEST window: another version."""
    raw = policy_raw()
    raw["windows"][-1]["window"] = window
    return raw


def test_the_active_version_is_read_once_per_transaction_and_follows_an_activation(
        sessions: sessionmaker[Session]) -> None:
    first = apply_policy(sessions, policy_raw(), ny(1, 0))
    book = PolicyBook()
    statements: list[str] = []
    engine = sessions.kw["bind"]

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "policy_versions" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with transaction(sessions) as session:
            assert book.active(session)[0] == first
            assert statements  # read (and the policy decoded) once
            statements.clear()
            assert book.active(session)[0] == first
            assert statements == []  # the second ask is answered from this transaction's read
            second = record_version(session, validate_policy(window_of("2h")), "t.yaml", ny(2, 0)).version
            assert second != first
            assert book.active(session)[0] == second  # activated in this transaction: seen at once
        statements.clear()
        with transaction(sessions) as session:
            assert book.active(session)[0] == second
        assert statements  # a new transaction reads it again
    finally:
        event.remove(engine, "before_cursor_execute", count)
    third = apply_policy(sessions, window_of("3h"), ny(3, 0))  # e.g. `sidecar policy apply`
    with transaction(sessions) as session:
        assert book.active(session)[0] == third  # a later transaction reads it again
