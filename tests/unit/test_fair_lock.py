"""The SQLite writer lock is handed to waiters in arrival order: a thread that releases it and asks
again at once queues behind those already waiting (the webhook drain used to win it back over and
over while webhook inserts waited)."""

from __future__ import annotations

import threading

import pytest

from sidecar.store.fair_lock import FairRLock


def _until_waiting(lock: FairRLock, n: int) -> None:
    """Block until `n` threads wait for `lock` (each blocked thread is counted as it queues)."""
    while lock.waiting() < n:
        threading.Event().wait(0.001)


def test_a_release_hands_the_lock_to_the_oldest_waiter_before_the_releaser_asks_again() -> None:
    lock, order = FairRLock(), []

    def take(name: str) -> None:
        with lock:
            order.append(name)

    lock.acquire()
    first = threading.Thread(target=take, args=("first",))
    first.start()
    _until_waiting(lock, 1)
    second = threading.Thread(target=take, args=("second",))
    second.start()
    _until_waiting(lock, 2)
    lock.release()
    take("releaser again")  # asks right away, as the drain's next slice does
    first.join(5)
    second.join(5)
    assert order == ["first", "second", "releaser again"]


def test_the_holder_may_take_it_again_and_it_is_free_only_after_as_many_releases() -> None:
    lock, taken = FairRLock(), threading.Event()
    with lock, lock:
        other = threading.Thread(target=lambda: (lock.acquire(), taken.set(), lock.release()))
        other.start()
        _until_waiting(lock, 1)
        assert not taken.is_set()
    other.join(5)
    assert taken.is_set()


def test_releasing_a_lock_this_thread_does_not_hold_is_refused() -> None:
    with pytest.raises(RuntimeError, match="does not hold"):
        FairRLock().release()


class _InterruptedGate:
    """A waiter's gate whose blocking wait is interrupted (as a signal's exception would)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = 0

    def acquire(self) -> bool:
        self._taken += 1
        if self._taken > 1:  # the first take closes the gate; the second is the wait
            raise KeyboardInterrupt
        return self._lock.acquire()

    def release(self) -> None:
        self._lock.release()


def test_a_waiter_interrupted_while_queued_does_not_keep_the_lock_from_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sidecar.store import fair_lock

    lock = FairRLock()
    holder_may_release, holder_has_it = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holder_has_it.set()
            holder_may_release.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    holder_has_it.wait()
    fake = type("FakeThreading", (), {"Lock": _InterruptedGate, "get_ident": staticmethod(threading.get_ident)})
    monkeypatch.setattr(fair_lock, "threading", fake)
    try:
        with pytest.raises(KeyboardInterrupt):
            lock.acquire()  # queued behind the holder, then interrupted
    finally:
        monkeypatch.undo()
        holder_may_release.set()
    holder.join()
    assert lock.waiting() == 0
    got = threading.Event()

    def take() -> None:
        with lock:
            got.set()

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    assert got.wait(10), "the lock went to the interrupted waiter and was never released"
