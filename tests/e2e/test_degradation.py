"""Graceful degradation (issue 15, item 7) on virtual time: the demo org on the emulators, then the
CRM (or Slack) answers 503 to everything for an hour. Clocks keep firing from the shadow store on
time, effects wait in the outbox (visible in `sidecar status` and /metrics), and once the service is
back they drain, oldest first, each exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.emulators.demo import DEMO_START, POLL_EVERY, Demo, DemoOptions
from sidecar import jobs, metrics
from sidecar.engine.patterns.keys import parse_step_key
from sidecar.status import gather
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, OutboxRow

OUTAGE = timedelta(hours=1)
WARMUP_LIMIT = 4 * 60  # virtual minutes


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    options = DemoOptions(crm="hubspot", seed=3, scenario=None, policy=None, speed=None,
                          duration=timedelta(hours=18), port=0)
    demo = Demo(options, tmp_path)
    # Start at 13:00 UTC (08:00 New York): the leads of the night arrive at once, in office hours.
    demo.clock.at = DEMO_START + timedelta(hours=13)
    demo.start()
    for minute in range(WARMUP_LIMIT):  # the normal demo, reps included, until steps fall due
        if minute % 10 == 0 and len(_due_within(demo, OUTAGE / 2)) >= 3:
            break
        demo.step(minute)
        demo.clock.at += timedelta(minutes=1)
    try:
        yield demo
    finally:
        demo.web.stop()
        demo.close()


def _cycle(demo: Demo, minutes: int) -> None:
    """Only the sidecar's jobs (the simulated reps cannot reach a CRM that is down either)."""
    for minute in range(minutes):
        jobs.run_cycle(demo.runtime, demo.clock.now(), poll=minute % POLL_EVERY == 0)
        demo.clock.at += timedelta(minutes=1)


def _due_within(demo: Demo, span: timedelta) -> dict[int, datetime]:
    now = demo.clock.now()
    with transaction(demo.sessions) as session:
        return {clock.id: clock.next_due_at for clock in session.scalars(select(Clock).where(
            Clock.status == "open", Clock.next_due_at > now, Clock.next_due_at <= now + span))}


def _fired(demo: Demo, since: datetime) -> dict[int, list[datetime]]:
    """Ladder steps decided since `since`, by clock id (from their step keys)."""
    with transaction(demo.sessions) as session:
        out: dict[int, list[datetime]] = {}
        for row in session.scalars(select(AuditRow).where(AuditRow.at >= since, AuditRow.actor == "system")):
            parsed = parse_step_key(row.step_key or "")
            if parsed is not None:
                out.setdefault(parsed[0], []).append(row.at)
        return out


def _effects(demo: Demo, port: str, since: datetime) -> list[OutboxRow]:
    with transaction(demo.sessions) as session:
        return list(session.scalars(select(OutboxRow).where(OutboxRow.port == port, OutboxRow.created_at >= since)
                                    .order_by(OutboxRow.id)))


@pytest.mark.slow
@pytest.mark.parametrize(("service", "port"), [("hubspot", "crm_writer"), ("slack", "notifier")])
def test_an_hour_long_outage_keeps_clocks_firing_and_drains_the_backlog_in_order(
        demo: Demo, service: str, port: str) -> None:
    start = demo.clock.now()
    due = _due_within(demo, OUTAGE)
    assert len(due) >= 3, due  # the test means something only if steps fall due inside the outage
    emulator = demo.hubspot if service == "hubspot" else demo.slack
    assert emulator is not None
    emulator.faults.add("server_error")  # every request: 5xx
    if service == "slack" and demo.teams is not None:  # the notifier port serves the demo's Teams team too
        demo.teams.faults.add("server_error")
    _cycle(demo, int(OUTAGE.total_seconds() // 60))

    fired = _fired(demo, start)
    for clock_id, due_at in due.items():  # on time: within the minute the evaluation runs in
        assert any(due_at <= at < due_at + timedelta(minutes=1) for at in fired.get(clock_id, [])), (
            clock_id, due_at, fired.get(clock_id))
    waiting = [row for row in _effects(demo, port, start) if row.status in ("pending", "in_flight")]
    assert waiting and all(row.status != "dead" for row in _effects(demo, port, start))
    now = demo.clock.now()
    with transaction(demo.sessions) as session:
        report = gather(session, now)
        scrape = metrics.render(session, now)
    assert report.outbox.get("pending", 0) >= len(waiting) and report.oldest_pending is not None
    assert report.oldest_pending == min(row.created_at for row in waiting)  # how far behind delivery is
    pending_line = next(line for line in scrape.splitlines()
                        if line.startswith(f'sidecar_outbox_effects{{port="{port}",status="pending"}}'))
    assert float(pending_line.rsplit(" ", 1)[1]) >= len(waiting)
    age_line = next(line for line in scrape.splitlines() if line.startswith("sidecar_outbox_oldest_pending_seconds "))
    assert float(age_line.rsplit(" ", 1)[1]) == (now - report.oldest_pending).total_seconds() > 0
    if service == "hubspot":
        assert any(p.crm == "hubspot" and p.error for p in report.polls)  # the poll failure is named too

    emulator.faults.clear()
    if demo.teams is not None:
        demo.teams.faults.clear()
    # The first effect whose backoff runs out finds the service back; the whole backlog goes with
    # it, instead of each effect waiting out its own backoff (up to an hour) after the return.
    first_retry = min(row.next_attempt_at for row in _effects(demo, port, start) if row.status == "pending")
    _cycle(demo, int((first_retry - demo.clock.now()).total_seconds() // 60) + 2)
    effects = _effects(demo, port, start)
    assert {row.status for row in effects} <= {"done", "skipped"}, [(r.id, r.status, r.last_error) for r in effects]
    drained = [row for row in effects if row.id in {w.id for w in waiting}]
    assert all(row.done_at is not None and row.done_at <= first_retry + timedelta(minutes=1) for row in drained), [
        (row.id, row.done_at, first_retry) for row in drained]
    done_order = [row.id for row in sorted(drained, key=lambda row: (row.done_at, row.id))]
    assert done_order == sorted(done_order)  # oldest first: no younger effect went out before an older one
