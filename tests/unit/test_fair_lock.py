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
