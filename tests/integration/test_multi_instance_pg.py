"""Several sidecars on one PostgreSQL: a killed leader is replaced at the next run of its job, and
two instances draining one intake, ticking the same clocks and dispatching the same outbox decide
and perform everything once. Each instance has its own engine (its own connections), as separate
`sidecar run` processes would; the threads stand in for the processes, the kill test uses a real one.

PostgreSQL only (SIDECAR_TEST_DATABASE_URL): SQLite runs one instance per file (a second one is
refused at start). The claim-and-lease logic of the intake also runs on SQLite, in the last test.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from sidecar import jobs, scheduler
from sidecar.domain import Crm, LeadSnapshot
from sidecar.engine.evaluator import tick
from sidecar.jobs import Runtime
from sidecar.outbox import Ports, dispatch
from sidecar.ports import ChangePage, Cursor, DirectoryUser, Notification
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import AuditRow, IntakeItem, Lead, LeadEvent, OutboxRow, SyncCursor
from sidecar.sync import drain_intake, enqueue_intake
from tests.integration import leader_worker
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ingest, ny, policy_raw, snapshot

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # seconds: the most any condition below may take to become true before the test fails


def postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("several instances need PostgreSQL (SIDECAR_TEST_DATABASE_URL); SQLite runs one")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """A bounded wait on a condition (not on time): fails the test if it never holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {WAIT:.0f} s for {what}"
        time.sleep(0.05)


class FakeCrm:
    """A Salesforce that returns one fixed snapshot per lead id, recording what each sidecar read."""

    crm = Crm.SALESFORCE

    def __init__(self, first_read: threading.Barrier | None = None,
                 during_read: Callable[[], None] | None = None) -> None:
        self.first_read, self.during_read = first_read, during_read
        self.reads: list[list[str]] = []
        self.polls = 0

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        self.polls += 1
        return iter(())

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        self.reads.append(list(crm_ids))
        if self.first_read is not None and len(self.reads) == 1:
            self.first_read.wait(timeout=WAIT)  # both sidecars are reading a batch at the same time
        if self.during_read is not None:
            during, self.during_read = self.during_read, None
            during()
        return [snapshot(crm_id, at=ny(24, 8)) for crm_id in crm_ids]

    def read_users(self) -> list[DirectoryUser]:
        return []

    def record_url(self, crm_id: str) -> str:
        return crm_id


def run_together(*work: Callable[[], Any]) -> list[Any]:
    """Run each callable on its own thread; re-raise the first failure."""
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10 * WAIT)
    assert not any(thread.is_alive() for thread in threads), "a sidecar thread never finished"
    if errors:
        raise errors[0]
    return results


def second_instance(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def other_sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    yield from second_instance(database_url)


# --- leader takeover -------------------------------------------------------------------------------------


def worker_backends(engine: Engine) -> tuple[int, int]:
    """(connections, advisory locks held) of the leader worker process, as PostgreSQL sees them."""
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT count(DISTINCT a.pid), count(l.pid) FROM pg_stat_activity a "
            "LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted "
            "WHERE a.application_name = :name"), {"name": leader_worker.APPLICATION_NAME}).one()
    return int(row[0]), int(row[1])


def test_a_sigkilled_poll_leader_is_replaced_at_the_next_run_of_the_job(
        database_url: str, engine: Engine, sessions: sessionmaker[Session]) -> None:
    postgres_only(engine)
    with subprocess.Popen([sys.executable, "-m", "tests.integration.leader_worker", database_url], cwd=ROOT,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as worker:
        try:
            takeover(worker, engine, sessions)
        finally:
            if worker.poll() is None:
                worker.kill()


def takeover(worker: subprocess.Popen[str], engine: Engine, sessions: sessionmaker[Session]) -> None:
    assert worker.stdout is not None and worker.stderr is not None
    assert worker.stdout.readline().strip() == "polling", worker.stderr.read()[-2000:]
    assert worker_backends(engine)[1] == 1  # the worker is the poll leader, in the middle of its poll

    crm = FakeCrm()
    follower = Runtime(sessions, context(), {"salesforce": crm}, Ports(None, {}))
    start = leader_worker.START
    assert jobs.poll_all(follower, start) == {}  # not the leader: the leader is polling
    assert crm.polls == 0
    with transaction(sessions) as session:  # and what `status` shows stays the leader's to record
        cursor = session.get(SyncCursor, ("salesforce", "leads"))
        assert cursor is not None and cursor.last_attempt_at is None and cursor.last_poll_at is None

    worker.kill()
    assert worker.wait(timeout=WAIT) == -9
    # PostgreSQL ends the dead process's connections, and with them its lock.
    wait_for(lambda: worker_backends(engine) == (0, 0), "PostgreSQL to end the killed leader's connections")

    next_run = start + timedelta(seconds=scheduler.DEFAULT_INTERVALS["poll"])  # one interval later
    assert "salesforce" in jobs.poll_all(follower, next_run)
    assert crm.polls == 1
    with transaction(sessions) as session:
        cursor = session.get(SyncCursor, ("salesforce", "leads"))
        assert cursor is not None and cursor.last_poll_at == next_run and cursor.last_error is None


# --- two instances draining one intake -------------------------------------------------------------------

LEADS, DELIVERIES, BATCH = 30, 90, 20  # each lead announced three times, in batches drained at the same time


def deliveries() -> list[tuple[str, str]]:
    return [(f"evt-{j:04d}", f"00Q{j % LEADS:04d}") for j in range(DELIVERIES)]


def applied_history(sessions: sessionmaker[Session]) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(lead events, audit rows) by (lead id in the CRM, kind): what was applied and decided, once each."""
    with transaction(sessions) as session:
        events = Counter((crm_id, kind) for crm_id, kind in
                         session.execute(select(Lead.crm_id, LeadEvent.kind).join(Lead, Lead.id == LeadEvent.lead_id)))
        decided = Counter((crm_id or "", kind) for crm_id, kind in
                          session.execute(select(Lead.crm_id, AuditRow.kind)
                                          .outerjoin(Lead, Lead.id == AuditRow.lead_id)))
    return events, decided


def seed_intake(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions, reps=("r1", "r2"))
    with transaction(sessions) as session:
        assert enqueue_intake(session, "salesforce", deliveries(), ny(24, 8, 1)) == DELIVERIES


def reference_run(tmp_path: Path, name: str, run: Callable[[sessionmaker[Session]], None],
                  seed: Callable[[sessionmaker[Session]], None]) -> sessionmaker[Session]:
    """The same work done by one sidecar on its own SQLite file: what each instance pair must match."""
    engine = make_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    seed(sessions)
    run(sessions)
    return sessions


def test_two_instances_draining_one_intake_apply_each_event_once(
        tmp_path: Path, engine: Engine, sessions: sessionmaker[Session],
        other_sessions: sessionmaker[Session]) -> None:
    postgres_only(engine)
    def alone(s: sessionmaker[Session]) -> None:
        assert drain_intake(s, context(), FakeCrm(), ny(24, 8, 2), BATCH) > 0

    reference = reference_run(tmp_path, "drain", alone, seed_intake)
    seed_intake(sessions)
    both_reading = threading.Barrier(2)
    crm_a, crm_b = FakeCrm(both_reading), FakeCrm(both_reading)
    applied_a, applied_b = run_together(lambda: drain_intake(sessions, context(), crm_a, ny(24, 8, 2), BATCH),
                                        lambda: drain_intake(other_sessions, context(), crm_b, ny(24, 8, 2), BATCH))

    assert applied_a > 0 and applied_b > 0  # both drained (they met while reading their first batches)
    read_a = Counter(crm_id for batch in crm_a.reads for crm_id in batch)
    read_b = Counter(crm_id for batch in crm_b.reads for crm_id in batch)
    assert sum((read_a + read_b).values()) == applied_a + applied_b <= DELIVERIES
    events, decided = applied_history(sessions)
    assert (events, decided) == applied_history(reference)
    assert sum(count for (_id, kind), count in events.items() if kind == "created") == LEADS
    assert not any(kind == "ingest_failed" for _id, kind in decided)
    with transaction(sessions) as session:
        left = session.scalar(select(func.count()).select_from(IntakeItem).where(
            (IntakeItem.processed_at.is_(None)) | IntakeItem.claim_token.is_not(None) | IntakeItem.error.is_not(None)))
        assert left == 0


# --- two instances ticking the same clocks and dispatching the same outbox --------------------------------

START, END, STEP = ny(24, 8), ny(24, 11), timedelta(minutes=3)
LADDER_LEADS = 12


def seed_ladders(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(stuck=[]), ny(1, 0))
    add_team(sessions, reps=("r1", "r2", "r3", "r4"))
    ctx = context()
    for i in range(LADDER_LEADS):
        ingest(sessions, ctx, snapshot(f"00Q{i:03d}", at=ny(24, 8, 3 * i), owner=f"r{1 + i % 4}"))


def timeline() -> list[datetime]:
    moments, now = [], START
    while now <= END:
        moments.append(now.astimezone(UTC))
        now += STEP
    return moments


def notified(notifier: FakeNotifier) -> Counter[tuple[str, str, str, datetime, str | None]]:
    """Each notification that went out, alone or inside a digest, by what it is about."""
    def about(n: Notification) -> tuple[str, str, str, datetime, str | None]:
        return n.kind, n.lead.crm_id, n.rule_id, n.at, n.recipient
    singles = Counter(about(n) for n in notifier.sent.values())
    return singles + Counter(about(n) for digest in notifier.digests.values() for n in digest)


def test_two_instances_ticking_and_dispatching_decide_and_perform_each_step_once(
        tmp_path: Path, engine: Engine, sessions: sessionmaker[Session],
        other_sessions: sessionmaker[Session]) -> None:
    postgres_only(engine)
    ref_notifier, ref_writer = FakeNotifier(), FakeWriter()

    def alone(s: sessionmaker[Session]) -> None:
        rt = Runtime(s, context(), {}, Ports(ref_notifier, {"salesforce": ref_writer}))
        for now in timeline():
            jobs.run_cycle(rt, now, poll=False)

    reference = reference_run(tmp_path, "ladders", alone, seed_ladders)
    seed_ladders(sessions)
    notifiers, writers = (FakeNotifier(), FakeNotifier()), (FakeWriter(), FakeWriter())
    same_instant = threading.Barrier(2)

    def instance(i: int, s: sessionmaker[Session]) -> Callable[[], Counter[str]]:
        rt = Runtime(s, context(), {}, Ports(notifiers[i], {"salesforce": writers[i]}))

        def run() -> Counter[str]:
            fired: Counter[str] = Counter()
            for now in timeline():  # both sidecars' clocks agree, as real instances' (NTP) do
                same_instant.wait(timeout=WAIT)
                fired += jobs.run_cycle(rt, now, poll=False)
            return fired
        return run

    fired_a, fired_b = run_together(instance(0, sessions), instance(1, other_sessions))
    last = timeline()[-1]
    jobs.dispatch(Runtime(sessions, context(), {}, Ports(notifiers[0], {"salesforce": writers[0]})), last)

    # Decided once: the same steps as one sidecar alone, no step twice.
    _events, decided = applied_history(sessions)
    assert decided == applied_history(reference)[1]
    assert sum(fired_a.values()) + sum(fired_b.values()) > 0
    with transaction(sessions) as session:
        step_keys = list(session.scalars(select(AuditRow.step_key).where(AuditRow.step_key.is_not(None))))
        assert len(step_keys) == len(set(step_keys))
        rows = list(session.scalars(select(OutboxRow)))
    # Performed once: every effect done on its first claim, each CRM write made by one sidecar only.
    assert rows and {(row.status, row.attempts) for row in rows} == {("done", 1)}
    crm_calls = Counter(writers[0].calls) + Counter(writers[1].calls)
    assert set(crm_calls.values()) == {1} and set(crm_calls) == set(ref_writer.calls)
    assert set(Counter(notifiers[0].calls + notifiers[1].calls).values()) == {1}
    assert notified(notifiers[0]) + notified(notifiers[1]) == notified(ref_notifier)
    assert set((notified(notifiers[0]) + notified(notifiers[1])).values()) == {1}


# --- a drainer whose lease ran out (SQLite and PostgreSQL) -------------------------------------------------


def test_a_drainer_that_lost_its_claim_applies_nothing_and_the_taker_applies_everything_once(
        sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("e1", "00QA"), ("e2", "00QB")], ny(24, 8))
    taker = FakeCrm()
    taken: list[int] = []
    # While the first drainer is still reading the CRM (no transaction open), its lease runs out and
    # another drainer, six minutes later (the lease is five), takes the batch over.
    slow = FakeCrm(during_read=lambda: taken.append(drain_intake(sessions, context(), taker, ny(24, 8, 7))))
    assert drain_intake(sessions, context(), slow, ny(24, 8, 1)) == 0
    assert taken == [2] and taker.reads == [["00QA", "00QB"]]
    events, decided = applied_history(sessions)
    assert sum(count for (_id, kind), count in events.items() if kind == "created") == 2
    assert not any(kind == "ingest_failed" for _id, kind in decided)
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(IntakeItem)
                              .where(IntakeItem.processed_at == ny(24, 8, 7))) == 2


def test_two_instances_dispatching_at_the_same_instant_send_one_recipients_warnings_as_one_digest(
        engine: Engine, sessions: sessionmaker[Session], other_sessions: sessionmaker[Session]) -> None:
    postgres_only(engine)
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ctx = context()
    for i in range(30):  # thirty leads of one owner, all warned at 8:48
        ingest(sessions, ctx, snapshot(f"00Q{i:03d}", at=ny(24, 8)))
    warned_at = ny(24, 8, 48).astimezone(UTC)
    assert tick(sessions, ctx, warned_at)
    notifiers = (FakeNotifier(), FakeNotifier())
    same_instant = threading.Barrier(2)

    def instance(i: int, s: sessionmaker[Session]) -> Callable[[], Counter[str]]:
        def run() -> Counter[str]:
            same_instant.wait(timeout=WAIT)
            return dispatch(s, Ports(notifiers[i], {"salesforce": FakeWriter()}), warned_at)
        return run

    run_together(instance(0, sessions), instance(1, other_sessions))
    assert notifiers[0].sent == notifiers[1].sent == {}
    digests = [digest for notifier in notifiers for digest in notifier.digests.values()]
    assert len(digests) == 1 and sorted(n.lead.crm_id for n in digests[0]) == [f"00Q{i:03d}" for i in range(30)]


# --- lock order: a tick never waits for a lead another transaction holds ------------------------------------


def test_a_tick_skips_a_lead_being_applied_instead_of_waiting_for_it_and_fires_it_next_time(
        engine: Engine, sessions: sessionmaker[Session], other_sessions: sessionmaker[Session]) -> None:
    """An apply locks a lead, then its clocks; the tick holds clocks and would lock the lead after
    them: waiting there could deadlock. It skips the locked lead and decides it on a later tick."""
    postgres_only(engine)
    apply_policy(sessions, policy_raw(stuck=[]), ny(1, 0))
    add_team(sessions)
    ctx = context()
    for i in range(3):
        ingest(sessions, ctx, snapshot(f"00Q{i:03d}", at=ny(24, 8)))
    warned_at = ny(24, 8, 48).astimezone(UTC)
    with other_sessions() as applying, applying.begin():
        # What an UPDATE of the lead takes (FOR NO KEY UPDATE), held as an apply holds it.
        locked = applying.scalars(select(Lead).where(Lead.crm_id == "00Q001").with_for_update(key_share=True)).one()
        fired = run_together(lambda: tick(sessions, ctx, warned_at))[0]  # bounded: fails if it waits
        with transaction(sessions) as session:
            warned = set(session.scalars(select(AuditRow.lead_id).where(AuditRow.pattern == "sla")))
        assert sum(fired.values()) == 2 and locked.id not in warned and len(warned) == 2
    assert sum(tick(sessions, ctx, warned_at).values()) == 1  # released: decided now, once
    with transaction(sessions) as session:
        assert len(set(session.scalars(select(AuditRow.step_key).where(AuditRow.pattern == "sla")))) == 3
