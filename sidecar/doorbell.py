"""A stored webhook rings the doorbell; the scheduler answers by running the webhook drain now.

Without it a webhook waits for the drain's next interval (1 s at best) before its lead is read,
which alone would spend half the end-to-end budget of "webhook -> first-response task < 2 s".

Ringing costs one flag set, so the request path stays cheap however fast webhooks arrive; the
listener answers at most once per `debounce_s`, so a burst of a thousand webhooks a second starts
a few drain runs that each take whatever arrived (one CRM read per lead), not a thousand. No ring is lost: the flag is
cleared *before* the drain is woken, so a webhook stored while the drain runs rings again, and
`Wakeups` runs the drain once more when its current run ends.

The flag is a `threading.Event` when the receivers run inside the `sidecar run` process, or a
`multiprocessing` Event shared with the web worker processes (SIDECAR_WEB_WORKERS > 1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

DEBOUNCE_S = 0.25  # at most 4 early drain runs a second; each takes every webhook stored so far


class Flag(Protocol):
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Doorbell:
    def __init__(self, flag: Flag | None = None) -> None:
        self.flag: Flag = flag if flag is not None else threading.Event()

    def ring(self) -> None:
        if not self.flag.is_set():  # a read instead of a write (a lock, across processes) when already rung
            self.flag.set()

    def answer(self, wake: Callable[[], None], timeout: float) -> bool:
        """Wait up to `timeout` seconds for a ring; on one, clear it first, then `wake`. True if rung."""
        if not self.flag.wait(timeout):
            return False
        self.flag.clear()  # before waking: a ring from here on is answered by the next call
        wake()
        return True

    def listen(self, wake: Callable[[], None], stop: threading.Event,
               debounce_s: float = DEBOUNCE_S) -> threading.Thread:
        """Answer rings in a daemon thread until `stop` is set."""
        def loop() -> None:
            while not stop.is_set():
                if self.answer(wake, timeout=0.5):  # the timeout only lets `stop` be seen
                    stop.wait(debounce_s)  # rings meanwhile keep the flag set: answered right after

        thread = threading.Thread(target=loop, name="sidecar-doorbell", daemon=True)
        thread.start()
        return thread
