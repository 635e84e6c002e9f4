"""Pending effects and the dispatcher that performs them.

Decisions write outbox rows in the same transaction as their audit row. The dispatcher claims due
rows with a lease (so a crashed dispatcher's rows are picked up again), calls the port with the
row's idempotency key (so a repeated call changes nothing), and settles the row: done, retry
later, or dead with a reason the admin can act on. Nothing is dropped silently. The calls and the
settling of one claimed batch are in sidecar.outbox_calls.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from sidecar import audit
from sidecar.noise import shape
from sidecar.outbox_calls import Claim, Renewal, batch_writes, hold, perform_all, perform_batch
from sidecar.policy.model import NoiseControl
from sidecar.ports import (
    CrmWriter,
    LeadUpdate,
    NoteRequest,
    Notification,
    Notifier,
    OwnerChange,
    TaskRequest,
    TaskUpdate,
)
from sidecar.store import bulk, ids
from sidecar.store.db import transaction
from sidecar.store.locks import one_at_a_time
from sidecar.store.models import AuditRow, OutboxRow

log = logging.getLogger(__name__)

Request = Notification | TaskRequest | NoteRequest | OwnerChange | LeadUpdate | TaskUpdate
ACTIONS: dict[str, tuple[str, type[Any]]] = {
    "notify": ("notifier", Notification),
    "create_task": ("crm_writer", TaskRequest),
    "add_note": ("crm_writer", NoteRequest),
    "change_owner": ("crm_writer", OwnerChange),
    "update_lead": ("crm_writer", LeadUpdate),
    "update_task": ("crm_writer", TaskUpdate),
}
_ADAPTERS = {action: TypeAdapter(kind) for action, (_port, kind) in ACTIONS.items()}
_ACTION_OF = {kind: action for action, (_port, kind) in ACTIONS.items()}


@dataclass
class Ports:
    notifier: Notifier | None
    writers: Mapping[str, CrmWriter]  # by CRM name
    noise: NoiseControl = field(default_factory=NoiseControl)


@dataclass
class RetryPolicy:
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 10
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempts: int, retry_after: float | None) -> timedelta:
        """The server's Retry-After when given, else capped exponential backoff with full jitter."""
        if retry_after is not None:
            return timedelta(seconds=retry_after)
        ceiling: timedelta = min(self.cap, self.base * 2 ** max(attempts - 1, 0))
        return ceiling * (0.5 + 0.5 * self.rng.random())


_ENQUEUED = "sidecar_enqueued_keys"  # per session: keys added in this transaction (asked again: looked up)


def enqueue(session: Session, *, key: str, request: Request, now: datetime, audit_id: int | None = None,
            depends_on: OutboxRow | None = None, not_before: datetime | None = None) -> OutboxRow:
    """Add one effect; the same key again returns the existing row (decisions may be re-run).
    `not_before` holds it back (quiet hours)."""
    enqueued: set[str] = session.info.setdefault(_ENQUEUED, set())
    if key in enqueued or not audit.is_fresh_effect(session, audit_id, key):
        existing = session.scalars(select(OutboxRow).where(OutboxRow.idempotency_key == key)).first()
        if existing is not None:
            return existing
    if depends_on is not None and depends_on.id is None:
        session.flush()  # the prerequisite's id, for the link
    action = _ACTION_OF[type(request)]
    values = {"idempotency_key": key, "port": ACTIONS[action][0], "action": action,
              "payload": _ADAPTERS[action].dump_python(request, mode="json"), "status": "pending",
              "attempts": 0, "next_attempt_at": max(now, not_before or now), "created_at": now,
              "audit_id": audit_id, "depends_on": depends_on.id if depends_on is not None else None,
              "recipient": request.recipient if isinstance(request, Notification) else None}
    reserved = ids.take(session, OutboxRow)  # reserved by the tick, else None
    if reserved is not None and bulk.is_open(session):
        row = bulk.new_row(session, OutboxRow, {"id": reserved, **values})  # inserted with its batch
    else:
        row = OutboxRow(id=reserved, **values)
        session.add(row)  # inserted with the next flush (the next decision's, or the commit): in bulk
    enqueued.add(key)
    return row


def leads_awaiting_owner_change(session: Session, lead_ids: set[int]) -> set[int]:
    """Those of `lead_ids` with an owner change decided but not settled (pending, or in flight):
    until it settles the CRM may show another owner than our shadow row, so nothing more is decided
    for them (the tick holds their clocks back)."""
    if not lead_ids:
        return set()
    unsettled = (select(AuditRow.lead_id).join(OutboxRow, OutboxRow.audit_id == AuditRow.id)
                 .where(OutboxRow.action == "change_owner", OutboxRow.status.in_(("pending", "in_flight")),
                        AuditRow.lead_id.in_(lead_ids)))
    return {lead_id for lead_id in session.scalars(unsettled) if lead_id is not None}


def release_orphaned_claims(sessions: sessionmaker[Session], now: datetime) -> int:
    """At start on SQLite, make every claim left in flight due again at once; returns how many.

    One instance per SQLite file (sidecar.store.locks.single_instance), so a claim still in flight
    at start was left by a process that died between its CRM call and the settle. Waiting out the
    lease would let the engine decide meanwhile on a shadow owner the CRM may no longer show; made
    due now, the next dispatch re-performs it against the CRM: an owner change re-reads the owner
    (already the target: done, and the new owner's task and messages follow; still the original:
    written; someone else: a conflict, the human wins), tasks and notes are found by their key. The
    tick leaves the lead alone until then (leads_awaiting_owner_change). The interrupted attempt
    still counts. On PostgreSQL a claim in flight may belong to a live instance: its lease decides.
    """
    with transaction(sessions) as session:
        if session.get_bind().dialect.name != "sqlite":
            return 0
        orphans = list(session.scalars(select(OutboxRow).where(OutboxRow.status == "in_flight")))
        for row in orphans:
            row.status, row.claimed_until, row.next_attempt_at = "pending", None, now
            row.last_error = "interrupted: the sidecar stopped before this effect's result was recorded"
    if orphans:
        log.info("%s effects were in flight when the sidecar last stopped; they are checked against the CRM "
                 "first", len(orphans))
    return len(orphans)


def decode(row: OutboxRow) -> Request:
    request: Request = _ADAPTERS[row.action].validate_python(row.payload)
    return request


def _claim(session: Session, now: datetime, batch: int, lease: timedelta,
           through_id: int | None = None) -> tuple[list[Claim], int]:
    """Claim due rows (and skip those whose prerequisite failed); returns (claims, skipped count).
    `through_id`: rows added after it are left for the next run, except those waiting on another."""
    one_at_a_time(session, "outbox:claim")  # several sidecars: one claims at a time, so a digest is never split
    parent = aliased(OutboxRow)
    # Effects whose prerequisite failed or was skipped are skipped too (no "new owner" DM after a
    # refused owner change).
    blocked = select(OutboxRow.id).join(parent, parent.id == OutboxRow.depends_on).where(
        OutboxRow.status == "pending", parent.status.in_(("dead", "skipped")))
    blocked_ids = list(session.scalars(blocked))
    if blocked_ids:
        session.execute(update(OutboxRow).where(OutboxRow.id.in_(blocked_ids)).values(
            status="skipped", last_error="not sent: the effect it depends on did not happen", done_at=now))
    due = (
        select(OutboxRow).outerjoin(parent, parent.id == OutboxRow.depends_on)
        .where(or_(and_(OutboxRow.status == "pending", OutboxRow.next_attempt_at <= now),
                   and_(OutboxRow.status == "in_flight", OutboxRow.claimed_until < now)))
        .where(or_(OutboxRow.depends_on.is_(None), parent.status == "done"))
        .order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(batch)
    )
    if through_id is not None:
        due = due.where(or_(OutboxRow.id <= through_id, OutboxRow.depends_on.is_not(None)))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(of=OutboxRow, skip_locked=True)
    claims = []
    for row in session.scalars(due):
        row.status, row.claimed_until, row.attempts = "in_flight", now + lease, row.attempts + 1
        claims.append(Claim(row.id, row.action, row.idempotency_key, decode(row), row.attempts))
    return claims, len(blocked_ids)


def dispatch(sessions: sessionmaker[Session], ports: Ports, now: datetime, *, batch: int = 50,
             max_batches: int = 20, lease: timedelta = timedelta(minutes=5),
             retry: RetryPolicy | None = None, clock: Callable[[], datetime] | None = None) -> Counter[str]:
    """Perform due effects; returns how many ended in each status.

    Claims batch after batch so that effects waiting on one just performed (a new owner's task
    after the owner change) go out in the same run. Effects stored while it runs (the webhook drain
    applying new leads meanwhile) wait for the next run, which the drain and the tick ring (others:
    the interval): taken a chunk at a time here they would cost a CRM call per few tasks instead of
    one per hundred. `clock`: the time right before each call, when its claim is renewed (see
    `outbox_calls.Renewal`; without it, `now`).
    """
    retry = retry or RetryPolicy()
    renew = Renewal(sessions, lease, clock or (lambda: now))
    outcomes: Counter[str] = Counter()
    through_id: int | None = None
    for _ in range(max_batches):
        with transaction(sessions) as session:
            if through_id is None:  # the newest row when the run started
                through_id = session.scalar(select(func.max(OutboxRow.id))) or 0
            claims, skipped = _claim(session, now, batch, lease, through_id)
            shaped = shape(session, claims, now, ports.noise)
            for claim, release in shaped.held:
                hold(session, claim, release)
        outcomes["held"] += len(shaped.held)
        outcomes["skipped"] += skipped
        if not claims:
            break
        sends, batches = batch_writes(ports, shaped.sends)
        done_before = outcomes["done"]
        for (crm, method), group in batches.items():
            if group := renew(group):
                perform_batch(sessions, ports, crm, method, group, now, retry, outcomes)
        for group in sends:
            if group := renew(group):
                perform_all(sessions, ports, group, now, retry, outcomes)
        retried = [claim.id for claim in claims if claim.attempt > 1]
        if outcomes["done"] > done_before and retried:
            _resume_backlog(sessions, retried, now)
    return +outcomes


def _resume_backlog(sessions: sessionmaker[Session], retried: list[int], now: datetime) -> None:
    """A port just delivered an effect that had failed before (one of `retried`): the service is
    back, and the effects of that port waiting out a retry backoff are due now.

    After an outage each waiting effect has its own backoff (up to `RetryPolicy.cap`), so without
    this the backlog would trickle out for up to an hour after the CRM or Slack came back, younger
    effects before older ones. Due together, the next batch of this run takes them oldest first.
    Rows held by noise control ("held: ...") keep their release time. A success on a first attempt
    says nothing about recovery (a rate-limited effect's Retry-After stands while others go out)."""
    with transaction(sessions) as session:
        ports = list(session.scalars(select(OutboxRow.port).where(
            OutboxRow.id.in_(retried), OutboxRow.status == "done").distinct()))
        session.execute(update(OutboxRow).where(
            OutboxRow.port.in_(ports), OutboxRow.status == "pending", OutboxRow.next_attempt_at > now,
            OutboxRow.last_error.is_not(None), OutboxRow.last_error.not_like("held:%"),
        ).values(next_attempt_at=now))


