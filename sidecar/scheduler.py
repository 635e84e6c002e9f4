"""`sidecar run`: the jobs on real time with APScheduler 3.

Each job runs at most once at a time (max_instances=1) and missed runs coalesce into one, so a
slow CRM never piles up work. SIGTERM/SIGINT stop the scheduler after the running jobs finish.
Jobs carry their own names (`poll`, `drain_webhooks`, `evaluate`, `dispatch`, `directory_sync`) in
APScheduler's records and ours; a job that fails as a whole is reported like a failing CRM (one
line, backoff, recovery line: see sidecar.failures), a routine run only at DEBUG.

The intervals are a safety net: `evaluate` is woken at the earliest `next_due_at` (re-armed after
every job that may have started or moved a clock), and `dispatch` right after a tick decided
something and at the earliest pending effect, so a step fires within about a second of its due
instant and its message follows at once (see `Wakeups`). A stored webhook wakes `drain_webhooks`
at once (sidecar.doorbell), and each batch the drain applied wakes `dispatch` (`Runtime.effects_stored`):
a new lead's first-response task goes out right after it was read.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from sidecar import jobs, outbox, wakeups
from sidecar.doorbell import Doorbell
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
    kept and honoured as soon as it ends, so no wake-up is lost or refused as a second instance.
    """

    def __init__(self, rt: Runtime, clock: Callable[[], datetime]) -> None:
        self.rt, self.clock = rt, clock
        self.scheduler: BaseScheduler | None = None
        self._lock = threading.RLock()
        self._closed = False
        # Runs handed to the executor and not ended yet (APScheduler's own count, which refuses a
        # second instance): a run may wait in the thread pool a while before it calls `started`.
        self._submitted: Counter[str] = Counter()
        self._running: dict[str, datetime] = {}  # job -> the injected clock's time its run started at
        self._again: dict[str, datetime] = {}  # wake-ups asked for while the job ran: when

    def wake(self, name: str, at: datetime | None = None) -> None:
        """Run job `name` at `at` (the injected clock's time; None: now), unless it runs sooner anyway."""
        # Held throughout: `close` waits for a wake-up in progress, so none reaches into a scheduler
        # that is shutting down (its shutdown holds the job store lock while the jobs finish).
        with self._lock:
            if self.scheduler is None or self._closed:
                return
            if name in self._running or self._submitted[name] > 0:  # now it would be refused: ask again at its end
                wanted = at or self.clock()
                self._again[name] = min(wanted, self._again.get(name, wanted))
                return
            job = self.scheduler.get_job(name)
            if job is None:
                return
            # APScheduler runs on its own (wall) clock; the injected clock may be offset from it, so move
            # by the delay and never into the past (a run late by more than the misfire grace is dropped).
            run_at = wall_now() + max(timedelta(0), (at or self.clock()) - self.clock())
            pending = job.next_run_time
            if pending is None or run_at < pending:
                self.scheduler.modify_job(name, next_run_time=run_at)

    def close(self) -> None:
        """No more wake-ups (before the scheduler shuts down)."""
        with self._lock:
            self._closed = True

    def started(self, name: str, now: datetime) -> None:
        with self._lock:
            self._running[name] = now

    def submitted(self, event: JobSubmissionEvent) -> None:
        with self._lock:
            self._submitted[event.job_id] += 1

    def ended(self, event: JobExecutionEvent) -> None:
        """APScheduler's word that a run ended (its instance already released, so a run asked for
        now is started, not refused): plan the next runs from what it did."""
        with self._lock:
            self._submitted[event.job_id] -= 1  # may reach -1 for a moment: events of two threads
            now = self._running.pop(event.job_id, None)
            again = self._again.pop(event.job_id, None)
        if now is None:  # the job skipped itself (backing off after a failure)
            return
        try:
            if again is not None:
                self.wake(event.job_id, again)
            self._plan(event.job_id, now, event.retval)
        except Exception as exc:  # the store is down: the intervals still run every job
            log.debug("could not plan the next %s run early: %s", event.job_id, exc)

    def _wake_at(self, name: str, at: datetime | None) -> None:
        """`wake` at the next due instant, if there is one (None: nothing due, the interval stands;
        waking at once then would run the job again and again while there is nothing to do)."""
        if at is not None:
            self.wake(name, at)

    def _plan(self, name: str, now: datetime, result: Any) -> None:
        if name == "evaluate":
            if result:  # new effects: hand them to the dispatcher now, not at its next interval
                self.wake("dispatch")
            self._wake_at("evaluate", wakeups.next_step_due(self.rt.sessions, after=now))
        elif name == "dispatch":
            if sum(dict(result or {}).values()) >= DISPATCH_CAPACITY:  # it stopped at its cap: more is due
                self.wake("dispatch")
            self._wake_at("dispatch", wakeups.next_effect_due(self.rt.sessions, after=now))
            if result:  # a settled owner change lets the tick decide that lead's held steps
                self.wake("evaluate")
        elif _changed_leads(name, result):  # it may have started or moved clocks, some due already (a late lead)
            self._wake_at("evaluate", wakeups.next_step_due(self.rt.sessions))
        else:  # nothing changed: only a step that came due since it started (not one a tick holds back)
            self._wake_at("evaluate", wakeups.next_step_due(self.rt.sessions, after=now))


def _changed_leads(name: str, result: Any) -> bool:
    """Whether a poll, drain, directory sync or review run changed anything a tick decides on.
    Without this, every such run woke `evaluate` at once while a clock was overdue and held back
    (an owner change not settled yet): under a stream of webhooks the drain runs up to 4 times a
    second (sidecar.doorbell), and evaluate ran after each, deciding nothing."""
    if name == "poll":
        return any(stats.snapshots or stats.events for stats in dict(result or {}).values())
    if name == "directory_sync":
        return any(r.created or r.updated or r.deactivated for r in result or [])
    return bool(result)  # drain_webhooks: leads applied; reviews: holds re-surfaced


_DISPATCH_DEFAULTS = inspect.signature(outbox.dispatch).parameters
# One run's most effects: outbox.dispatch's default batch x max_batches (what jobs.dispatch runs with).
DISPATCH_CAPACITY: int = _DISPATCH_DEFAULTS["batch"].default * _DISPATCH_DEFAULTS["max_batches"].default
# The webhook drain and the dispatcher let new work gather this long before a CRM call, so that
# leads arriving many a second share reads and task creates (sidecar.sync._linger).
LINGER = timedelta(milliseconds=200)


def _job(name: str, rt: Runtime, clock: Callable[[], datetime], wake: Wakeups | None = None) -> Callable[[], Any]:
    def run() -> Any:
        now = clock()
        if not rt.failures.due(name, "", now):
            return None
        if wake is not None:
            wake.started(name, now)
        try:
            work: Callable[[Runtime, datetime], Any] = getattr(jobs, WORK[name])
            result = work(rt, now)
        except Exception as exc:  # reported once with its cause; the next due run tries again
            rt.failures.failed(name, "", now, exc)
            return None
        rt.failures.succeeded(name, "", now)
        log.debug("%s done: %s", name, result, extra={"job": name})
        return result  # Wakeups.ended plans the next runs from it
    run.__name__ = run.__qualname__ = name  # what APScheduler shows for the job
    return run


def build(rt: Runtime, clock: Callable[[], datetime], intervals: dict[str, int] | None = None,
          backoff_cap: timedelta | None = None) -> BlockingScheduler:
    """The jobs on their intervals (seconds); a failure waits its job's interval, doubling up to
    `backoff_cap` (default: the tracker's)."""
    intervals = {**DEFAULT_INTERVALS, **(intervals or {})}
    rt.failures.bases.update({name: timedelta(seconds=seconds) for name, seconds in intervals.items()})
    rt.failures.cap = backoff_cap or rt.failures.cap
    scheduler = BlockingScheduler(timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True,
                                                          # a late run still runs: a missed one sends no end event
                                                          # and would leave Wakeups counting it as submitted
                                                          "misfire_grace_time": None})
    wake = Wakeups(rt, clock)
    for name, seconds in intervals.items():
        # First run now on APScheduler's own (wall) clock, whatever time `clock` tells the jobs.
        scheduler.add_job(_job(name, rt, clock, wake), "interval", seconds=seconds, id=name, name=name,
                          next_run_time=wall_now())
    wake.scheduler = scheduler
    # A new lead's first-response task, decided while the webhook drain applies it, goes out within
    # LINGER: the tasks the drain stores meanwhile go in the same CRM call (HubSpot: 100 a call).
    rt.effects_stored = lambda: wake.wake("dispatch", clock() + LINGER)
    rt.intake_linger = LINGER
    scheduler.add_listener(wake.submitted, EVENT_JOB_SUBMITTED)
    scheduler.add_listener(wake.ended, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    _WAKEUPS[scheduler] = wake
    return scheduler


_WAKEUPS: weakref.WeakKeyDictionary[BaseScheduler, Wakeups] = weakref.WeakKeyDictionary()


def run_forever(rt: Runtime, clock: Callable[[], datetime], intervals: dict[str, int] | None = None,
                backoff_cap: timedelta | None = None, doorbell: Doorbell | None = None) -> None:
    """`doorbell`: rung by the webhook receivers when they stored lead ids; the drain runs at once."""
    scheduler = build(rt, clock, intervals, backoff_cap)

    stopping = threading.Event()
    wake = _WAKEUPS[scheduler]
    if doorbell is not None:
        doorbell.listen(lambda: wake.wake("drain_webhooks"), stopping)
    # The signal handler only writes a byte into a pipe. It runs on the main thread between any two
    # bytecodes, maybe while that thread holds a lock the stopping needs (Wakeups' lock, APScheduler's
    # job store lock while it plans runs): taking one there could wait forever. A pipe write takes no
    # lock (Event.set does); a thread of its own reads the byte and stops everything.
    signalled, signal_pipe = os.pipe()
    os.set_blocking(signal_pipe, False)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full of earlier signals: stopping already
            os.write(signal_pipe, bytes([signum]))

    stopper = threading.Thread(target=_stop_when_signalled, args=(scheduler, wake, signalled, stopping),
                               name="sidecar-stop", daemon=True)
    stopper.start()
    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheduler.start()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(signal_pipe)  # the stopper reads the end of the pipe and returns, if no signal came
        stopper.join()
        os.close(signalled)
        stopping.set()


def _stop_when_signalled(scheduler: BaseScheduler, wake: Wakeups, signalled: int, stopping: threading.Event) -> None:
    """The stopping a signal asked for, on a normal thread: no wake-up after `close`, then the
    running jobs finish and the scheduler ends (`scheduler.start` returns on the main thread)."""
    got = os.read(signalled, 1)
    if not got:  # the pipe closed: run_forever ended without a signal
        return
    stopping.set()
    log.info("signal %s: finishing running jobs, then stopping", got[0])
    wake.close()
    scheduler.shutdown(wait=True)
