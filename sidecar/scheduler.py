"""`sidecar run`: the jobs on real time with APScheduler 3.

Each job runs at most once at a time (max_instances=1) and missed runs coalesce into one, so a
slow CRM never piles up work. SIGTERM/SIGINT stop the scheduler after the running jobs finish.
Jobs carry their own names (`poll`, `drain_webhooks`, `evaluate`, `dispatch`, `directory_sync`) in
APScheduler's records and ours; a job that fails as a whole is reported like a failing CRM (one
line, backoff, recovery line: see sidecar.failures), a routine run only at DEBUG.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler

from sidecar import jobs
from sidecar.jobs import Runtime

log = logging.getLogger(__name__)

DEFAULT_INTERVALS = {"poll": 60, "drain_webhooks": 5, "evaluate": 15, "dispatch": 5,
                     "directory_sync": 900, "reviews": 3600}  # seconds; Settings.job_intervals() overrides
# job name -> function in sidecar.jobs; "reviews" re-surfaces aging compliance holds (each at most once a day)
WORK = {"poll": "poll_all", "drain_webhooks": "drain_webhooks", "evaluate": "evaluate", "dispatch": "dispatch",
        "directory_sync": "sync_directory", "reviews": "resurface_reviews"}


def _job(name: str, rt: Runtime, clock: Callable[[], datetime]) -> Callable[[], None]:
    def run() -> None:
        now = clock()
        if not rt.failures.due(name, "", now):
            return
        try:
            work: Callable[[Runtime, datetime], Any] = getattr(jobs, WORK[name])
            result = work(rt, now)
        except Exception as exc:  # reported once with its cause; the next due run tries again
            rt.failures.failed(name, "", now, exc)
        else:
            rt.failures.succeeded(name, "", now)
            log.debug("%s done: %s", name, result, extra={"job": name})
    run.__name__ = run.__qualname__ = name  # what APScheduler shows for the job
    return run


def build(rt: Runtime, clock: Callable[[], datetime], intervals: dict[str, int] | None = None,
          backoff_cap: timedelta | None = None) -> BlockingScheduler:
    """The jobs on their intervals (seconds); a failure waits its job's interval, doubling up to
    `backoff_cap` (default: the tracker's)."""
    intervals = {**DEFAULT_INTERVALS, **(intervals or {})}
    rt.failures.bases.update({name: timedelta(seconds=seconds) for name, seconds in intervals.items()})
    rt.failures.cap = backoff_cap or rt.failures.cap
    scheduler = BlockingScheduler(timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True})
    for name, seconds in intervals.items():
        # First run now on APScheduler's own (wall) clock, whatever time `clock` tells the jobs.
        scheduler.add_job(_job(name, rt, clock), "interval", seconds=seconds, id=name, name=name,
                          next_run_time=datetime.now(UTC))
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
