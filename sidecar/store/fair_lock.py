"""A reentrant lock handed to its waiters in the order they came (first come, first served).

`threading.RLock` promises no order: a thread that releases it and asks again at once (the webhook
drain committing one slice of leads and opening the next) usually gets it back before a waiter the
release woke has even been scheduled. On a busy machine the webhook receivers' inserts and the
dispatcher's settles then waited behind many of the drain's transactions in a row (webhook acks
measured seconds late). Here a release hands the lock straight to the oldest waiter, so a
transaction waits for those queued before it and no longer.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FairRLock:
    def __init__(self) -> None:
        self._guard = threading.Lock()  # protects the fields below; held only for a few operations
        self._owner: int | None = None
        self._depth = 0
        self._waiters: deque[tuple[int, threading.Lock]] = deque()  # (thread id, its gate), oldest first

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._guard:
            if self._owner == me:  # reentrant: the same thread again
                self._depth += 1
                return True
            if self._owner is None and not self._waiters:
                self._owner, self._depth = me, 1
                return True
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append((me, gate))
        try:
            gate.acquire()  # opened by `release`, which has already made this thread the owner
        except BaseException:  # interrupted (a signal's exception): leave no trace in the queue
            with self._guard:
                if (me, gate) in self._waiters:
                    self._waiters.remove((me, gate))
                    raise
            self.release()  # handed over meanwhile: pass it on, or nobody would ever get it again
            raise
        return True

    def release(self) -> None:
        with self._guard:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a FairRLock this thread does not hold")
            self._depth -= 1
            if self._depth:
                return
            if self._waiters:
                self._owner, gate = self._waiters.popleft()
                self._depth = 1
                gate.release()
            else:
                self._owner = None

    def waiting(self) -> int:
        """How many threads wait for the lock now."""
        with self._guard:
            return len(self._waiters)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
