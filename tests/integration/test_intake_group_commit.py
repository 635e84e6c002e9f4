"""The webhook intake's group commit: webhooks arriving while a transaction is written are stored
together in the next one; each caller returns only once its pairs are committed, or raises."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.store.db import transaction
from sidecar.store.models import IntakeItem
from sidecar.web import intake
from tests.support import ny

AT = ny(24, 8)


def stored(sessions: sessionmaker[Session]) -> list[str]:
    with transaction(sessions) as session:
        return list(session.scalars(select(IntakeItem.delivery_id).order_by(IntakeItem.delivery_id)))


def _until(condition: object, what: str) -> None:
    """Wait (bounded) for another thread to reach a point; synchronisation, not a timing assertion."""
    gate = threading.Event()
    for _ in range(2000):
        if condition():  # type: ignore[operator]
            return
        gate.wait(0.005)
    raise AssertionError(f"never happened: {what}")


def test_webhooks_waiting_for_a_transaction_are_stored_together_in_the_next(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    real = intake.enqueue_intake
    writes: list[list[str]] = []
    first_inside, let_go = threading.Event(), threading.Event()

    def slow_first(session: Session, crm: str, items: Iterable[tuple[str, str]], now: datetime) -> int:
        items = list(items)
        writes.append([d for d, _ in items])
        if len(writes) == 1:
            first_inside.set()
            let_go.wait(30)
        return real(session, crm, items, now)

    monkeypatch.setattr(intake, "enqueue_intake", slow_first)
    rang: list[int] = []
    store = intake.GroupCommit(sessions, "hubspot", lambda: AT, lambda: rang.append(1))
    threads = [threading.Thread(target=store, args=([(f"d{i}", str(100 + i))],)) for i in range(4)]
    threads[0].start()
    assert first_inside.wait(30)
    for thread in threads[1:]:
        thread.start()
    _until(lambda: len(store._queue) == 3, "three webhooks queued behind the first transaction")
    let_go.set()
    for thread in threads:
        thread.join(30)
    assert [sorted(w) for w in writes] == [["d0"], ["d1", "d2", "d3"]]  # the three waiting shared one transaction
    assert stored(sessions) == ["d0", "d1", "d2", "d3"]
    assert rang == [1, 1]  # the drain's doorbell, once per transaction that stored something new


def test_every_caller_of_a_failed_transaction_gets_the_error_and_nothing_is_acknowledged(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(session: Session, crm: str, items: Iterable[tuple[str, str]], now: datetime) -> int:
        raise OSError("disk full")

    real = intake.enqueue_intake
    monkeypatch.setattr(intake, "enqueue_intake", broken)
    store = intake.GroupCommit(sessions, "hubspot", lambda: AT)
    with pytest.raises(OSError, match="disk full"):
        store([("d1", "101")])
    monkeypatch.setattr(intake, "enqueue_intake", real)
    store([("d2", "102")])  # the writer's turn was handed on: the next webhook is stored
    assert stored(sessions) == ["d2"]


def test_a_repeated_delivery_stores_nothing_and_rings_nothing(sessions: sessionmaker[Session]) -> None:
    rang: list[int] = []
    store = intake.intake_callback(sessions, "salesforce", lambda: AT, lambda: rang.append(1))
    store([("04l000000000001AAA", "00Q000000000001AAA")])
    store([("04l000000000001AAA", "00Q000000000001AAA")])
    assert stored(sessions) == ["04l000000000001AAA"]
    assert rang == [1]
