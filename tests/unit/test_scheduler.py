"""The scheduler registers every job on its interval and calls it with the injected clock's time."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED, JobExecutionEvent, JobSubmissionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import jobs, scheduler, wakeups
from sidecar.jobs import Runtime
from sidecar.outbox import Ports
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ingest, ny, policy_raw, snapshot


def audit_rows(sessions: sessionmaker[Session]) -> list[AuditRow]:
    with transaction(sessions) as session:
        return list(session.scalars(select(AuditRow).order_by(AuditRow.id)))

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


def _runtime(sessions: sessionmaker[Session]) -> Runtime:
    return Runtime(sessions, context(), {}, Ports(FakeNotifier(), {"salesforce": FakeWriter()}))


def _run(built: BlockingScheduler, name: str, now: datetime) -> None:
    """Run a job as APScheduler does: its next run moves one interval on first, then it runs."""
    job = built.get_job(name)
    built.modify_job(name, next_run_time=now + job.trigger.interval)
    _submitted(built, name, now)
    _ended(built, name, now, job.func())


def _submitted(built: BlockingScheduler, name: str, now: datetime) -> None:
    """What APScheduler announces once it has handed a run to its executor."""
    built._dispatch_event(JobSubmissionEvent(EVENT_JOB_SUBMITTED, name, "default", [now]))


def _ended(built: BlockingScheduler, name: str, now: datetime, result: object) -> None:
    """What APScheduler's executor announces once a run has ended (and its instance is released)."""
    built._dispatch_event(JobExecutionEvent(EVENT_JOB_EXECUTED, name, "default", now, retval=result))


def _wall(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    # APScheduler runs on wall time; pinned here to the injected clock's instant so the planned runs can be read.
    monkeypatch.setattr(scheduler, "wall_now", lambda: at)


def test_evaluate_wakes_at_the_earliest_due_step_and_dispatch_right_after_a_decision(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    rt = _runtime(sessions)
    ingest(sessions, rt.ctx, snapshot(at=ny(24, 8)))  # 1h window: the 80 % warning is due at 08:48
    now = [ny(24, 8, 30).astimezone(UTC)]
    _wall(monkeypatch, now[0])
    built = scheduler.build(rt, lambda: now[0])
    _run(built, "evaluate", now[0])
    _run(built, "poll", now[0])  # nothing is due before 08:48: the interval stands
    assert built.get_job("evaluate").next_run_time == now[0] + timedelta(seconds=15)
    now[0] = (ny(24, 8, 47) + timedelta(seconds=59)).astimezone(UTC)
    _wall(monkeypatch, now[0])
    _run(built, "evaluate", now[0])  # a routine run re-arms evaluate at the first due step
    assert built.get_job("evaluate").next_run_time == ny(24, 8, 48)  # not 08:48:14 (the 15 s interval)
    now[0] = ny(24, 8, 48).astimezone(UTC)
    _wall(monkeypatch, now[0])
    built.modify_job("dispatch", next_run_time=now[0] + timedelta(seconds=5))
    _run(built, "evaluate", now[0])
    assert [row.kind for row in audit_rows(sessions)][-1] == "sla_breach_imminent"
    assert built.get_job("dispatch").next_run_time == now[0]  # its message goes out now, not in 5 s
    # The breach step (09:00) is further away than the interval: the safety net runs first.
    assert built.get_job("evaluate").next_run_time == now[0] + timedelta(seconds=15)
    assert wakeups.next_step_due(sessions, after=now[0]) == ny(24, 9, 0)
    _run(built, "dispatch", now[0])
    assert len(rt.ports.notifier.sent) == 1  # type: ignore[union-attr]


def test_a_wake_up_asked_for_while_the_job_runs_is_kept_until_it_ends(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    rt = _runtime(sessions)
    now = ny(24, 8).astimezone(UTC)
    _wall(monkeypatch, now)
    built = scheduler.build(rt, lambda: now)
    dispatch_job = built.get_job("dispatch")
    built.modify_job("dispatch", next_run_time=now + timedelta(seconds=5))

    def busy(rt: Runtime, at: datetime) -> Counter[str]:
        _run(built, "evaluate", now)  # evaluate ends while dispatch still runs and asks for it
        assert built.get_job("dispatch").next_run_time == now + timedelta(seconds=5)  # not started twice
        return Counter()

    monkeypatch.setattr(jobs, "dispatch", busy)
    monkeypatch.setattr(jobs, "evaluate", lambda rt, at: Counter({"sla_breach": 1}))
    _submitted(built, "dispatch", now)
    result = dispatch_job.func()
    assert built.get_job("dispatch").next_run_time == now + timedelta(seconds=5)  # still running
    _ended(built, "dispatch", now, result)
    assert built.get_job("dispatch").next_run_time == now  # honoured as soon as it ended


def test_with_nothing_due_evaluate_and_dispatch_keep_their_intervals(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """No open clock and no pending effect: the next runs stay at the intervals (waking them at once
    would run both again and again while there is nothing to do)."""
    apply_policy(sessions, policy_raw(), ny(1, 0))
    rt = _runtime(sessions)
    now = ny(24, 8).astimezone(UTC)
    _wall(monkeypatch, now)
    built = scheduler.build(rt, lambda: now)
    _run(built, "evaluate", now)
    _run(built, "dispatch", now)
    _run(built, "drain_webhooks", now)
    assert built.get_job("evaluate").next_run_time == now + timedelta(seconds=15)
    assert built.get_job("dispatch").next_run_time == now + timedelta(seconds=5)


def test_effects_stored_by_the_webhook_drain_wake_dispatch_after_a_short_linger(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    rt = _runtime(sessions)
    now = ny(24, 8).astimezone(UTC)
    _wall(monkeypatch, now)
    built = scheduler.build(rt, lambda: now)
    built.modify_job("dispatch", next_run_time=now + timedelta(seconds=5))
    assert rt.effects_stored is not None
    rt.effects_stored()  # what sync.drain_intake calls after each transaction that applied leads
    assert built.get_job("dispatch").next_run_time == now + scheduler.LINGER
    assert timedelta(milliseconds=200) >= scheduler.LINGER  # a linger, not an interval
    rt.effects_stored()  # more tasks stored meanwhile do not push the run back
    assert built.get_job("dispatch").next_run_time == now + scheduler.LINGER
    assert rt.intake_linger == scheduler.LINGER  # the drain lingers as long in `sidecar run`


def test_a_ring_of_the_doorbell_runs_the_drain_now(sessions: sessionmaker[Session],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from sidecar.doorbell import Doorbell

    rt = _runtime(sessions)
    now = ny(24, 8).astimezone(UTC)
    _wall(monkeypatch, now)
    built = scheduler.build(rt, lambda: now)
    built.modify_job("drain_webhooks", next_run_time=now + timedelta(seconds=5))
    bell = Doorbell()
    bell.ring()  # a receiver stored a webhook
    wake = scheduler._WAKEUPS[built]
    assert bell.answer(lambda: wake.wake("drain_webhooks"), timeout=0)  # what run_forever's listener does
    assert built.get_job("drain_webhooks").next_run_time == now


def test_a_run_that_changed_nothing_does_not_wake_evaluate_for_a_step_already_overdue(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """A step overdue (held back by the tick, e.g. an owner change not settled) woke evaluate at once
    after every drain, poll, directory sync or review run: evaluate ran after each of them for nothing."""
    from sidecar.sync import PollStats

    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    rt = _runtime(sessions)
    ingest(sessions, rt.ctx, snapshot(at=ny(24, 8)))  # its 80 % warning was due at 08:48
    now = ny(24, 9, 30).astimezone(UTC)
    assert wakeups.next_step_due(sessions) is not None and wakeups.next_step_due(sessions) < now
    _wall(monkeypatch, now)
    built = scheduler.build(rt, lambda: now)
    interval = now + timedelta(seconds=15)
    polled = {"salesforce": PollStats(pages=1)}
    monkeypatch.setattr(jobs, "poll_all", lambda rt, at: polled)
    for name in ("drain_webhooks", "poll", "reviews"):
        built.modify_job("evaluate", next_run_time=interval)
        _run(built, name, now)
        assert built.get_job("evaluate").next_run_time == interval, name
    # A run that did change leads may have started clocks due already (like this one): evaluate runs now.
    polled["salesforce"] = PollStats(pages=1, snapshots=1)
    _run(built, "poll", now)
    assert built.get_job("evaluate").next_run_time == now
    built.modify_job("evaluate", next_run_time=interval)
    monkeypatch.setattr(jobs, "drain_webhooks", lambda rt, at: 1)
    _run(built, "drain_webhooks", now)
    assert built.get_job("evaluate").next_run_time == now


def test_a_stop_signal_while_a_wake_up_holds_the_lock_does_not_block_the_handler(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler runs on the main thread between any two bytecodes: one that took Wakeups' lock
    (or APScheduler's) could wait forever for a thread that waits for the main thread."""
    import signal
    import threading

    handlers: dict[int, object] = {}
    installed = threading.Event()

    def install(signum: int, handler: object) -> object:
        handlers.setdefault(signum, handler)
        installed.set()
        return signal.SIG_DFL

    monkeypatch.setattr(signal, "signal", install)
    for name in scheduler.WORK.values():
        monkeypatch.setattr(jobs, name, lambda rt, at: None)
    rt = _runtime(sessions)
    now = ny(24, 8).astimezone(UTC)
    built: list[BlockingScheduler] = []
    real_build = scheduler.build
    monkeypatch.setattr(scheduler, "build", lambda *args: built.append(real_build(*args)) or built[-1])
    runner = threading.Thread(target=scheduler.run_forever, args=(rt, lambda: now), daemon=True)
    runner.start()
    assert installed.wait(5)  # the runner installs its handlers right before it starts the scheduler
    wake = scheduler._WAKEUPS[built[0]]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # a wake-up in progress, as `Wakeups.wake` holds the lock across its planning
        with wake._lock:
            holding.set()
            release.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    assert holding.wait(5)
    handled = threading.Event()
    handler = handlers[signal.SIGTERM]
    assert callable(handler)
    threading.Thread(target=lambda: (handler(signal.SIGTERM, None), handled.set()), daemon=True).start()
    assert handled.wait(5)  # returned at once, though the lock is taken
    release.set()
    runner.join(10)
    assert not runner.is_alive() and wake._closed  # the stopping happened on its own thread
