"""The intake callback of the webhook receivers: store announced (delivery id, lead id) pairs
durably before the webhook is acknowledged, and ring the doorbell so the drain reads them at once.

Group commit: requests that arrive while a transaction is being written wait for it and are then
stored together in the next one (one INSERT ... ON CONFLICT DO NOTHING, one commit), written by one
of them. Under load a commit serves many webhooks instead of each paying for its own transaction
and its own turn at the SQLite writer lock; a lone webhook is written at once, as before. Every
caller returns only after the transaction holding its pairs committed (or raises its error, which
the receiver turns into a 500 so the CRM delivers again): an acknowledgement still means stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from sidecar.store.db import transaction
from sidecar.sync import enqueue_intake


@dataclass
class _Waiter:
    pairs: list[tuple[str, str]]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to write the next transaction, not because its own was written
    error: BaseException | None = None


class GroupCommit:
    """Callable(pairs): returns once `pairs` are committed. Thread-safe (the receivers call it from
    worker threads)."""

    def __init__(self, sessions: sessionmaker[Session], crm: str, clock: Callable[[], datetime],
                 on_stored: Callable[[], None] | None = None) -> None:
        self.sessions, self.crm, self.clock, self.on_stored = sessions, crm, clock, on_stored
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._writing = False  # a caller is writing a transaction now

    def __call__(self, pairs: list[tuple[str, str]]) -> None:
        me = _Waiter(pairs)
        with self._lock:
            self._queue.append(me)
            lead = not self._writing
            self._writing = True
        if not lead:
            me.done.wait()
            if not me.lead:  # written by another caller
                if me.error is not None:
                    raise me.error
                return
        self._write()
        if me.error is not None:
            raise me.error

    def _write(self) -> None:
        """Write everything queued in one transaction, then hand the writing on to the next waiter."""
        with self._lock:
            batch, self._queue = self._queue, []
        error: BaseException | None = None
        new = 0
        try:
            with transaction(self.sessions) as session:
                new = enqueue_intake(session, self.crm, [p for w in batch for p in w.pairs], self.clock())
        except BaseException as exc:  # every caller of this transaction learns it failed
            error = exc
        for waiter in batch:
            waiter.error, waiter.lead = error, False
        with self._lock:
            successor = self._queue[0] if self._queue else None
            self._writing = successor is not None
        if successor is not None:
            successor.lead = True
            successor.done.set()
        for waiter in batch:
            waiter.done.set()
        if new and self.on_stored is not None:
            self.on_stored()


def intake_callback(sessions: sessionmaker[Session], crm: str, clock: Callable[[], datetime],
                    on_stored: Callable[[], None] | None = None) -> Callable[[list[tuple[str, str]]], None]:
    """Store (delivery id, lead id) pairs; returns only after the commit, so an ack means stored.
    `on_stored` is called after a commit that stored anything new (the drain's doorbell)."""
    return GroupCommit(sessions, crm, clock, on_stored)
