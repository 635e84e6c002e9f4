"""The drain's doorbell: a stored webhook wakes the drain once, a ring during the wake-up is kept."""

from __future__ import annotations

import multiprocessing

from sidecar.doorbell import Doorbell


def test_a_ring_is_answered_once_and_no_ring_wakes_nothing() -> None:
    bell, woken = Doorbell(), []
    assert not bell.answer(lambda: woken.append(1), timeout=0)
    bell.ring()
    bell.ring()  # two webhooks before the listener looks: one drain run takes both
    assert bell.answer(lambda: woken.append(1), timeout=0)
    assert not bell.answer(lambda: woken.append(1), timeout=0)
    assert woken == [1]


def test_a_ring_while_the_drain_is_woken_is_answered_next_time() -> None:
    bell, woken = Doorbell(), []

    def wake() -> None:
        woken.append(len(woken))
        if len(woken) == 1:
            bell.ring()  # a webhook stored while the first wake-up is handled

    bell.ring()
    assert bell.answer(wake, timeout=0)
    assert bell.answer(wake, timeout=0)  # not lost: the flag was cleared before waking
    assert woken == [0, 1]


def test_the_flag_may_be_shared_with_web_worker_processes() -> None:
    flag = multiprocessing.get_context("spawn").Event()
    worker_side, scheduler_side, woken = Doorbell(flag), Doorbell(flag), []
    worker_side.ring()
    assert scheduler_side.answer(lambda: woken.append(1), timeout=0)
    assert woken == [1] and not flag.is_set()
