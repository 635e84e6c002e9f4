"""A sidecar that can die: runs tick + dispatch over a virtual morning and SIGKILLs itself at a
chosen database statement or port call. Used by test_crash_safety.py as a subprocess.

Usage: python -m tests.integration.crash_worker DATABASE_URL APPLIED_FILE KILL_AT
(KILL_AT = 0 never kills). Effects are "applied" by appending their key to APPLIED_FILE, looked up
first like the real CRM writers do, so a repeated call with the same key applies nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.outbox import Ports, dispatch
from sidecar.ports import NoteRequest, Notification, OwnerChange, TaskRequest, TaskUpdate
from sidecar.store.db import make_engine, session_factory
from tests.support import ny

START, END = ny(24, 8), ny(24, 11)
LEASE_MINUTES = 5  # the dispatcher's default lease


class Killer:
    def __init__(self, kill_at: int) -> None:
        self.kill_at, self.count = kill_at, 0

    def step(self, *_args: Any) -> None:
        self.count += 1
        if self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


class FilePort:
    """Notifier and CRM writer in one: applies each key once, durably."""

    def __init__(self, path: Path, killer: Killer) -> None:
        self.path, self.killer = path, killer
        self.applied = set(path.read_text().split()) if path.exists() else set()

    def _apply(self, key: str) -> str:
        if key not in self.applied:
            with self.path.open("a") as out:
                out.write(key + "\n")
                out.flush()
                os.fsync(out.fileno())
            self.applied.add(key)
        self.killer.step()  # die after applying, before the outbox row is marked done
        return key

    crm: Any = "salesforce"

    def send(self, notification: Notification, idempotency_key: str) -> str:
        return self._apply(idempotency_key)

    def send_digest(self, notifications: Sequence[Notification], idempotency_key: str) -> str:
        return self._apply(idempotency_key)

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        return self._apply(idempotency_key)

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        return self._apply(idempotency_key)

    def update_task(self, update: TaskUpdate, idempotency_key: str) -> str:
        # A lead reassigned twice: its follow-up task moves on to the next owner.
        return self._apply(idempotency_key)

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        self._apply(idempotency_key)


def run(database_url: str, applied: Path, kill_at: int) -> int:
    """Returns how many statements and port calls it made (the range worth killing in)."""
    killer = Killer(kill_at)
    engine = make_engine(database_url)
    event.listen(engine, "before_cursor_execute", killer.step)
    sessions = session_factory(engine)
    ctx = EngineContext(PolicyBook(), RecordLinks())
    port = FilePort(applied, killer)
    ports = Ports(port, {"salesforce": port})
    now: datetime = START
    while now <= END:
        utc = now.astimezone(UTC)
        tick(sessions, ctx, utc)
        dispatch(sessions, ports, utc)
        now += timedelta(minutes=1)
    if kill_at == 0:
        # A run that is allowed to finish also outlives the longest lease a killed run can have left
        # (claimed at END at the latest), so every orphaned claim is taken over. Dispatch only: no new
        # decisions, so the audit stays comparable with the reference run.
        for _ in range(LEASE_MINUTES + 1):
            dispatch(sessions, ports, now.astimezone(UTC))
            now += timedelta(minutes=1)
    engine.dispose()
    return killer.count


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
