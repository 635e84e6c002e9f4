"""The sidecar's jobs as plain functions of (runtime, now).

`sidecar run` lets APScheduler call them on real time; the demo and simulations call them from a
virtual-time loop. Same functions, so an accelerated run behaves exactly like a real one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sidecar import outbox, sync
from sidecar.directory import load_directory
from sidecar.directory_sync import SyncResult, sync_users
from sidecar.engine.assignment import assign_pending
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.failures import FailureTracker, describe
from sidecar.outbox import Ports
from sidecar.ports import CrmReader
from sidecar.store.db import transaction
from sidecar.store.locks import leader_lock

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    sessions: sessionmaker[Session]
    ctx: EngineContext
    readers: Mapping[str, CrmReader]
    ports: Ports
    retry: outbox.RetryPolicy = field(default_factory=outbox.RetryPolicy)
    directory_file: Path | None = None  # what the CRMs do not know: teams, capacity, seniority
    failures: FailureTracker = field(default_factory=FailureTracker)  # per CRM: backoff, one line, readiness
    lease: timedelta = timedelta(minutes=5)  # how long a dispatcher's claim on an effect holds (outbox.dispatch)
    clock: Callable[[], datetime] | None = None  # the jobs' clock, read again mid-run (outbox lease renewal)
    # Called when a job committed effects the dispatcher should send now (`sidecar run` wakes it).
    effects_stored: Callable[[], None] | None = None
    # How long the webhook drain lets a lead wait for others to share its CRM read (sync.drain_intake).
    intake_linger: timedelta = timedelta(0)


def poll_all(rt: Runtime, now: datetime) -> dict[str, sync.PollStats]:
    """Poll each CRM; with several sidecars on PostgreSQL, whoever holds a CRM's lock polls it.
    A failing CRM is retried with backoff and reported once (see sidecar.failures)."""
    stats = {}
    for name, reader in rt.readers.items():
        if not rt.failures.due("poll", name, now):
            continue
        try:  # one CRM's outage must not stop the others' polling
            with leader_lock(rt.sessions, f"poll:{name}") as leader:
                if not leader:  # another sidecar polls this CRM now, and records how it went
                    continue
                stats[name] = sync.poll(rt.sessions, rt.ctx, reader, now)
        except Exception as exc:  # reported; the cursor did not move, the next poll tries again
            failure = rt.failures.failed("poll", name, now, exc)
            _remember_poll(rt, name, now, failure.cause, failure.since)
        else:
            rt.failures.succeeded("poll", name, now)
            _remember_poll(rt, name, now, None, None)
    return stats


def _remember_poll(rt: Runtime, crm: str, now: datetime, error: str | None, since: datetime | None) -> None:
    """Store the poll's outcome for `sidecar status`; a store that cannot take it is reported by the
    jobs that need the store, so this one line only says what was not kept."""
    try:
        sync.record_poll_outcome(rt.sessions, crm, now, error, since)
    except SQLAlchemyError as exc:
        log.warning("could not store the result of the %s poll: %s", crm, describe(exc))


def sync_directory(rt: Runtime, now: datetime) -> list[SyncResult]:
    """CRM users -> reps (active flag, names, e-mails); the directory file keeps teams and capacity."""
    directory = load_directory(rt.directory_file) if rt.directory_file and rt.directory_file.exists() else None
    results = []
    for name, reader in rt.readers.items():
        if not rt.failures.due("directory_sync", name, now):
            continue
        with leader_lock(rt.sessions, f"directory:{name}") as leader:
            if not leader:  # another sidecar syncs this CRM's users now; reading them too would only spend API calls
                continue
            try:  # one CRM's outage must not stop the other's sync
                users = reader.read_users()
            except Exception as exc:  # reported; the reps stay as they were
                rt.failures.failed("directory_sync", name, now, exc)
                continue
            rt.failures.succeeded("directory_sync", name, now)
            with transaction(rt.sessions) as session:
                results.append(sync_users(session, name, users, directory))
    for result in results:
        if result.unplaced:
            log.warning("CRM users without a team in the directory file: %s", ", ".join(result.unplaced),
                        extra={"crm": result.crm})
    return results


def drain_webhooks(rt: Runtime, now: datetime) -> int:
    applied = 0
    for name, reader in rt.readers.items():
        if not rt.failures.due("drain_webhooks", name, now):
            continue
        try:  # one CRM's outage must not stop the other's webhook intake
            applied += sync.drain_intake(rt.sessions, rt.ctx, reader, now, applied_hook=rt.effects_stored,
                                         linger=rt.intake_linger, clock=rt.clock)
        except Exception as exc:  # reported; the ids stay queued for the next run
            rt.failures.failed("drain_webhooks", name, now, exc)
        else:
            rt.failures.succeeded("drain_webhooks", name, now)
    return applied


def evaluate(rt: Runtime, now: datetime) -> Counter[str]:
    """Give unowned leads an owner first (when the policy assigns), then fire due ladder steps."""
    assigned = 0
    with leader_lock(rt.sessions, "assign") as leader, transaction(rt.sessions) as session:
        if leader and rt.ctx.book.active(session)[1].assignment.enabled:
            assigned = len(assign_pending(session, rt.ctx, now))
    fired = tick(rt.sessions, rt.ctx, now)
    if assigned:
        fired["lead_assigned"] += assigned
    return fired


def resurface_reviews(rt: Runtime, now: datetime) -> int:
    """Compliance holds waiting longer than the policy's `resurface_after`: shown to compliance again
    (each at most once a day, so the job may run hourly)."""
    from sidecar.engine.patterns.compliance_decisions import resurface

    with leader_lock(rt.sessions, "reviews") as leader, transaction(rt.sessions) as session:
        return resurface(session, rt.ctx, now) if leader else 0


def dispatch(rt: Runtime, now: datetime) -> Counter[str]:
    with transaction(rt.sessions) as session:  # the admin's noise settings, as the active policy says
        rt.ports.noise = rt.ctx.book.active(session)[1].noise
    return outbox.dispatch(rt.sessions, rt.ports, now, lease=rt.lease, retry=rt.retry, clock=rt.clock)


def run_cycle(rt: Runtime, now: datetime, *, poll: bool = True) -> Counter[str]:
    """One pass of everything, in data-path order; returns the audit kinds fired."""
    if poll:
        poll_all(rt, now)
    drain_webhooks(rt, now)
    fired = evaluate(rt, now)
    if resurfaced := resurface_reviews(rt, now):
        fired["compliance_review_aging"] += resurfaced
    dispatch(rt, now)
    return fired
