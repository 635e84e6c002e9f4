"""The scheduler registers every job on its interval and calls it with the injected clock's time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from sidecar import jobs, scheduler
from sidecar.jobs import Runtime
from sidecar.outbox import Ports
from tests.support import context

AT = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def test_every_job_is_scheduled_and_gets_the_injected_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, datetime]] = []
    for name in ("poll_all", "drain_webhooks", "evaluate", "dispatch", "sync_directory", "resurface_reviews"):
        monkeypatch.setattr(jobs, name, lambda rt, now, name=name: seen.append((name, now)))
    rt = Runtime(None, context(), {}, Ports(None, {}))  # type: ignore[arg-type]
    built = scheduler.build(rt, lambda: AT, {"poll": 30})
    intervals = {job.id: job.trigger.interval.total_seconds() for job in built.get_jobs()}
    assert intervals == {"poll": 30, "drain_webhooks": 5, "evaluate": 15, "dispatch": 5, "directory_sync": 900,
                         "reviews": 3600}
    assert {job.name for job in built.get_jobs()} == set(intervals)  # APScheduler logs these, not `<locals>.run`
    for job in built.get_jobs():
        job.func()
    assert sorted(seen) == sorted((name, AT) for name in (
        "poll_all", "drain_webhooks", "evaluate", "dispatch", "sync_directory", "resurface_reviews"))


def test_a_failing_job_is_logged_and_does_not_raise(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def boom(rt: Runtime, now: datetime) -> None:
        raise RuntimeError("CRM down")

    monkeypatch.setattr(jobs, "poll_all", boom)
    rt = Runtime(None, context(), {}, Ports(None, {}))  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    job = next(j for j in scheduler.build(rt, lambda: AT).get_jobs() if j.id == "poll")
    job.func()
    assert "poll failed: CRM down; next try in 1 min" in caplog.text
    assert any(r.exc_info and r.levelno == logging.DEBUG for r in caplog.records)
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.INFO)  # traceback: DEBUG only
