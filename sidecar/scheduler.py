"""`sidecar run`: the jobs on real time with APScheduler 3.

Each job runs at most once at a time (max_instances=1) and missed runs coalesce into one, so a
slow CRM never piles up work. SIGTERM/SIGINT stop the scheduler after the running jobs finish.
Jobs carry their own names (`poll`, `drain_webhooks`, `evaluate`, `dispatch`, `directory_sync`) in
APScheduler's records and ours; a job that fails as a whole is reported like a failing CRM (one
line, backoff, recovery line: see sidecar.failures), a routine run only at DEBUG.

The intervals are a safety net: `evaluate` is woken at the earliest `next_due_at` (re-armed after
every job that may have started or moved a clock), and `dispatch` right after a tick decided
something and at the earliest pending effect, so a step fires within about a second of its due
instant and its message follows at once (see `Wakeups`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from sidecar import jobs, wakeups
from sidecar.jobs import Runtime

log = logging.getLogger(__name__)

DEFAULT_INTERVALS = {"poll": 60, "drain_webhooks": 5, "evaluate": 15, "dispatch": 5,
                     "directory_sync": 900, "reviews": 3600}  # seconds; Settings.job_intervals() overrides
# job name -> function in sidecar.jobs; "reviews" re-surfaces aging compliance holds (each at most once a day)
WORK = {"poll": "poll_all", "drain_webhooks": "drain_webhooks", "evaluate": "evaluate", "dispatch": "dispatch",
        "directory_sync": "sync_directory", "reviews": "resurface_reviews"}


def wall_now() -> datetime:
    """APScheduler's own notion of now (it always runs on wall time)."""
    return datetime.now(UTC)


class Wakeups:
    """Runs a job earlier than its interval: at the instant its next work is due, or at once.

    A job is never started twice at a time (max_instances=1): a wake-up asked for while it runs is
    kept and honoured as soon as it ends, so no wake-up is lost and APScheduler never has to skip one.
    """

    def __init__(self, rt: Runtime, clock: Callable[[], datetime]) -> None:
        self.rt, self.clock = rt, clock
        self.scheduler: BaseScheduler | None = None
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._again: set[str] = set()

    def wake(self, name: str, at: datetime | None = None) -> None:
        """Run job `name` at `at` (the injected clock's time; None: now), unless it runs sooner anyway."""
        if self.scheduler is None:
            return
        with self._lock:
            if name in self._running and (at is None or at <= self.clock()):
                self._again.add(name)
                return
        job = self.scheduler.get_job(name)
        if job is None:
            return
        # APScheduler runs on its own (wall) clock; the injected clock may be offset from it, so move
        # by the delay and never into the past (a run late by more than the misfire grace is dropped).
        wall = wall_now()
        run_at = wall + max(timedelta(0), (at or self.clock()) - self.clock())
        pending = job.next_run_time
        if pending is None or run_at < pending:
            self.scheduler.modify_job(name, next_run_time=run_at)

    def started(self, name: str) -> None:
        with self._lock:
            self._running.add(name)
            self._again.discard(name)

    def finished(self, name: str, now: datetime, result: Any) -> None:
        with self._lock:
            self._running.discard(name)
            again = name in self._again
        if again:
            self.wake(name)
        if name == "evaluate":
            if result:  # new effects: hand them to the dispatcher now, not at its next interval
                self.wake("dispatch")
            self.wake("evaluate", wakeups.next_step_due(self.rt.sessions, after=now))
        elif name == "dispatch":
            if sum(dict(result or {}).values()) >= DISPATCH_CAPACITY:  # it stopped at its cap: more is due
                self.wake("dispatch")
            self.wake("dispatch", wakeups.next_effect_due(self.rt.sessions, after=now))
            if result:  # a settled owner change lets the tick decide that lead's held steps
                self.wake("evaluate")
        else:  # polls, webhooks, directory, reviews may start or move clocks
            self.wake("evaluate", wakeups.next_step_due(self.rt.sessions))


DISPATCH_CAPACITY = 50 * 20  # outbox.dispatch's default batch x max_batches: one run's most


def _job(name: str, rt: Runtime, clock: Callable[[], datetime], wake: Wakeups | None = None) -> Callable[[], None]:
    def run() -> None:
        now = clock()
        if not rt.failures.due(name, "", now):
            return
        if wake is not None:
            wake.started(name)
        result: Any = None
        try:
            work: Callable[[Runtime, datetime], Any] = getattr(jobs, WORK[name])
            result = work(rt, now)
        except Exception as exc:  # reported once with its cause; the next due run tries again
            rt.failures.failed(name, "", now, exc)
        else:
            rt.failures.succeeded(name, "", now)
            log.debug("%s done: %s", name, result, extra={"job": name})
        finally:
            if wake is not None:
                _rearm(wake, name, now, result)
    run.__name__ = run.__qualname__ = name  # what APScheduler shows for the job
    return run


def _rearm(wake: Wakeups, name: str, now: datetime, result: Any) -> None:
    try:
        wake.finished(name, now, result)
    except Exception as exc:  # the store is down: the intervals still run every job
        log.debug("could not plan the next %s run early: %s", name, exc)


def build(rt: Runtime, clock: Callable[[], datetime], intervals: dict[str, int] | None = None,
          backoff_cap: timedelta | None = None) -> BlockingScheduler:
    """The jobs on their intervals (seconds); a failure waits its job's interval, doubling up to
    `backoff_cap` (default: the tracker's)."""
    intervals = {**DEFAULT_INTERVALS, **(intervals or {})}
    rt.failures.bases.update({name: timedelta(seconds=seconds) for name, seconds in intervals.items()})
    rt.failures.cap = backoff_cap or rt.failures.cap
    scheduler = BlockingScheduler(timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True})
    wake = Wakeups(rt, clock)
    for name, seconds in intervals.items():
        scheduler.add_job(_job(name, rt, clock, wake), "interval", seconds=seconds, id=name, name=name,
                          next_run_time=clock())
    wake.scheduler = scheduler
    return scheduler


def run_forever(rt: Runtime, clock: Callable[[], datetime], intervals: dict[str, int] | None = None,
                backoff_cap: timedelta | None = None) -> None:
    scheduler = build(rt, clock, intervals, backoff_cap)

    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():  # a second signal (e.g. sent to the whole process group) changes nothing
            return
        stopping.set()
        log.info("signal %s: finishing running jobs, then stopping", signum)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
