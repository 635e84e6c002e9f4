"""`sidecar run`: the jobs on real time with APScheduler 3.

Each job runs at most once at a time (max_instances=1) and missed runs coalesce into one, so a
slow CRM never piles up work. SIGTERM/SIGINT stop the scheduler after the running jobs finish.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler

from sidecar import jobs
from sidecar.jobs import Runtime

log = logging.getLogger(__name__)

DEFAULT_INTERVALS = {"poll": 60, "webhooks": 5, "evaluate": 15, "dispatch": 5, "directory": 900}  # seconds


def _job(name: str, rt: Runtime, work: Callable[[Runtime, datetime], Any],
         clock: Callable[[], datetime]) -> Callable[[], None]:
    def run() -> None:
        try:
            result = work(rt, clock())
            log.info("job done", extra={"job": name, "result": str(result)})
        except Exception:  # reported; the next run tries again
            log.exception("job %s failed", name)
    return run


def build(rt: Runtime, clock: Callable[[], datetime], intervals: dict[str, int] | None = None) -> BlockingScheduler:
    intervals = {**DEFAULT_INTERVALS, "reviews": 3600, **(intervals or {})}
    scheduler = BlockingScheduler(timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True})
    work = {"poll": jobs.poll_all, "webhooks": jobs.drain_webhooks, "evaluate": jobs.evaluate,
            "dispatch": jobs.dispatch, "directory": jobs.sync_directory}
    work["reviews"] = jobs.resurface_reviews  # aging compliance holds, at most once a day each (interval: 1 h)
    for name, seconds in intervals.items():
        scheduler.add_job(_job(name, rt, work[name], clock), "interval", seconds=seconds, id=name,
                          next_run_time=clock())
    return scheduler


def run_forever(rt: Runtime, clock: Callable[[], datetime], intervals: dict[str, int] | None = None) -> None:
    scheduler = build(rt, clock, intervals)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing running jobs, then stopping", signum)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
