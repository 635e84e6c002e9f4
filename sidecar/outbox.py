"""Pending effects and the dispatcher that performs them.

Decisions write outbox rows in the same transaction as their audit row. The dispatcher claims due
rows with a lease (so a crashed dispatcher's rows are picked up again), calls the port with the
row's idempotency key (so a repeated call changes nothing), and settles the row: done, retry
later, or dead with a reason the admin can act on. Nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import TypeAdapter
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from sidecar import audit
from sidecar.noise import shape
from sidecar.policy.model import NoiseControl
from sidecar.ports import (
    ConflictError,
    CrmWriter,
    LeadUpdate,
    NoteRequest,
    Notification,
    Notifier,
    OwnerChange,
    PermanentError,
    TaskRequest,
    TaskUpdate,
    TransientError,
)
from sidecar.store import bulk, ids
from sidecar.store.db import transaction
from sidecar.store.locks import one_at_a_time
from sidecar.store.models import AuditRow, Lead, OutboxRow

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
# Effects a CRM writer may perform many at a time: the optional batch method (sidecar.ports
# BatchTaskWriter, BatchNoteWriter, BatchOwnerWriter) for each request type.
BATCH_METHODS: dict[type[Any], str] = {TaskRequest: "create_tasks", NoteRequest: "add_notes",
                                       OwnerChange: "change_owners"}
_CREATES = frozenset({"create_tasks", "add_notes"})  # told which keys were never sent before


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


@dataclass(frozen=True)
class _Claim:
    id: int
    action: str
    key: str
    request: Request
    attempt: int  # the row's attempt count when claimed: the token that proves the claim is still ours


def _claim(session: Session, now: datetime, batch: int, lease: timedelta) -> tuple[list[_Claim], int]:
    """Claim due rows (and skip those whose prerequisite failed); returns (claims, skipped count)."""
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
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(of=OutboxRow, skip_locked=True)
    claims = []
    for row in session.scalars(due):
        row.status, row.claimed_until, row.attempts = "in_flight", now + lease, row.attempts + 1
        claims.append(_Claim(row.id, row.action, row.idempotency_key, decode(row), row.attempts))
    return claims, len(blocked_ids)


def _perform(ports: Ports, claim: _Claim) -> str:
    request = claim.request
    if isinstance(request, Notification):
        if ports.notifier is None:
            raise PermanentError("no notifier configured: set SIDECAR_SLACK_BOT_TOKEN")
        return ports.notifier.send(request, claim.key)
    writer = ports.writers.get(request.lead.crm.value)
    if writer is None:
        raise PermanentError(f"no {request.lead.crm.value} connection configured")
    if isinstance(request, TaskRequest):
        return writer.create_task(request, claim.key)
    if isinstance(request, NoteRequest):
        return writer.add_note(request, claim.key)
    if isinstance(request, LeadUpdate):
        writer.update_lead(request, claim.key)
        return f"status:{request.crm_status}" if request.crm_status else "tags"
    if isinstance(request, TaskUpdate):
        return writer.update_task(request, claim.key)
    writer.change_owner(request, claim.key)
    return f"owner:{request.to_owner_id}"


def dispatch(sessions: sessionmaker[Session], ports: Ports, now: datetime, *, batch: int = 50,
             max_batches: int = 20, lease: timedelta = timedelta(minutes=5),
             retry: RetryPolicy | None = None, clock: Callable[[], datetime] | None = None) -> Counter[str]:
    """Perform due effects; returns how many ended in each status.

    Claims batch after batch so that effects waiting on one just performed (a new owner's task
    after the owner change) go out in the same run. `clock`: the time right before each call, when
    its claim is renewed (see `_Renewal`; without it, `now`).
    """
    retry = retry or RetryPolicy()
    renew = _Renewal(sessions, lease, clock or (lambda: now))
    outcomes: Counter[str] = Counter()
    for _ in range(max_batches):
        with transaction(sessions) as session:
            claims, skipped = _claim(session, now, batch, lease)
            shaped = shape(session, claims, now, ports.noise)
            for claim, release in shaped.held:
                _hold(session, claim, release)
        outcomes["held"] += len(shaped.held)
        outcomes["skipped"] += skipped
        if not claims:
            break
        sends, batches = _batch_writes(ports, shaped.sends)
        done_before = outcomes["done"]
        for (crm, method), group in batches.items():
            if group := renew(group):
                _perform_batch(sessions, ports, crm, method, group, now, retry, outcomes)
        for group in sends:
            if group := renew(group):
                _perform_all(sessions, ports, group, now, retry, outcomes)
        retried = [claim.id for claim in claims if claim.attempt > 1]
        if outcomes["done"] > done_before and retried:
            _resume_backlog(sessions, retried, now)
    return +outcomes


@dataclass
class _Renewal:
    """A batch's claims all start their lease at the claim, but its calls go out one after another:
    under a slow CRM or Slack (or a busy machine) the last ones would start after their lease ran
    out, while another dispatcher takes them over and performs them too (the chaos run saw a
    hundred Slack messages posted twice). So each claim's lease starts again right before its own
    call, and a claim already taken over is dropped instead of performed a second time."""

    sessions: sessionmaker[Session]
    lease: timedelta
    clock: Callable[[], datetime]

    def __call__(self, group: list[_Claim]) -> list[_Claim]:
        until = self.clock() + self.lease
        kept = []
        with transaction(self.sessions) as session:
            for claim in group:
                held = session.execute(update(OutboxRow).where(
                    OutboxRow.id == claim.id, OutboxRow.status == "in_flight",
                    OutboxRow.attempts == claim.attempt).values(claimed_until=until))
                if cast(Any, held).rowcount == 1:
                    kept.append(claim)
                else:
                    log.warning("effect %s: claim lost before its call (lease expired and taken over); "
                                "not performed here", claim.key)
        return kept


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


def _batch_writes(ports: Ports, sends: list[list[_Claim]]
                  ) -> tuple[list[list[_Claim]], dict[tuple[str, str], list[_Claim]]]:
    """Tasks, notes and owner changes for a CRM whose writer can batch them go out together, by kind
    (1,000 of them in a handful of calls). Claim order is kept within a kind; an effect that
    depends on another is never claimed with it (`_claim` waits for the prerequisite to be done)."""
    rest: list[list[_Claim]] = []
    batches: dict[tuple[str, str], list[_Claim]] = {}
    for group in sends:
        request = group[0].request
        method = BATCH_METHODS.get(type(request))
        if len(group) == 1 and method is not None and not isinstance(request, Notification):
            writer = ports.writers.get(request.lead.crm.value)
            if writer is not None and hasattr(writer, method):
                batches.setdefault((request.lead.crm.value, method), []).append(group[0])
                continue
        rest.append(group)
    for batch_key, group in list(batches.items()):
        if len(group) == 1:  # a batch of one takes the single-item path
            rest.append(batches.pop(batch_key))
    return rest, batches


def _perform_batch(sessions: sessionmaker[Session], ports: Ports, crm: str, method: str, group: list[_Claim],
                   now: datetime, retry: RetryPolicy, outcomes: Counter[str]) -> None:
    """One batch method call; each effect settles on its own result (one bad item fails alone)."""
    perform = getattr(ports.writers[crm], method)
    items = [(claim.request, claim.key) for claim in group]
    # A first attempt (claimed with attempts 0 -> 1) was never sent: a crash, a lost lease or an
    # unknown outcome all leave the row claimed again with attempts >= 2, which is looked up first.
    unsent = {"unsent": frozenset(claim.key for claim in group if claim.attempt == 1)} if method in _CREATES else {}
    try:
        results: Mapping[str, str | Exception] = perform(items, **unsent)
    except Exception as exc:  # the whole call failed: every item gets the same outcome
        results = dict.fromkeys((claim.key for claim in group), exc)
    with transaction(sessions) as session:
        for claim in group:
            result = results.get(claim.key, TransientError("the batch answer had no result for this effect"))
            outcomes[_settle(session, claim, _outcome(result, claim.key), now, retry)] += 1


def _outcome(result: str | Exception, key: str) -> tuple[str, str, float | None]:
    if isinstance(result, str):
        return "done", result, None
    if isinstance(result, TransientError):
        return "retry", str(result), result.retry_after
    if isinstance(result, ConflictError):
        return "skipped", f"conflict: {result}", None
    if isinstance(result, PermanentError):
        return "dead", str(result), None
    log.error("effect %s failed unexpectedly: %s", key, result)  # retried, then dead-lettered: never dropped
    return "retry", f"{type(result).__name__}: {result}", None


def _still_ours(session: Session, claim: _Claim) -> OutboxRow | None:
    """The row, if this dispatcher's claim still holds: a lease that ran out may have been taken
    over (and settled) by another dispatcher, whose result must not be overwritten."""
    row = session.get(OutboxRow, claim.id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if row is None or row.status != "in_flight" or row.attempts != claim.attempt:
        log.warning("effect %s: claim lost (lease expired and taken over); result not recorded", claim.key)
        return None
    return row


def _hold(session: Session, claim: _Claim, release: datetime) -> None:
    """Back to pending until the recipient's window frees up; holding is not a failed attempt."""
    row = _still_ours(session, claim)
    if row is None:
        return
    row.status, row.claimed_until, row.attempts = "pending", None, row.attempts - 1
    row.next_attempt_at, row.last_error = release, f"held: warning limit reached for {row.recipient}"


def _perform_all(sessions: sessionmaker[Session], ports: Ports, group: list[_Claim], now: datetime,
                 retry: RetryPolicy, outcomes: Counter[str]) -> None:
    """Perform one message: a single effect, or several warnings as one digest (settled alike)."""
    try:
        settled = _outcome(_perform(ports, group[0]) if len(group) == 1 else _digest(ports, group), group[0].key)
    except Exception as exc:  # mapped below: transient, conflict, permanent, or unexpected
        settled = _outcome(exc, group[0].key)
    with transaction(sessions) as session:
        for claim in group:
            outcomes[_settle(session, claim, settled, now, retry)] += 1


def _digest(ports: Ports, group: list[_Claim]) -> str:
    if ports.notifier is None:
        raise PermanentError("no notifier configured: set SIDECAR_SLACK_BOT_TOKEN")
    notifications = [claim.request for claim in group if isinstance(claim.request, Notification)]
    # The members name the digest: a retry of the same group is recognisably the same message.
    members = hashlib.sha256("\n".join(sorted(claim.key for claim in group)).encode()).hexdigest()[:16]
    return "digest:" + ports.notifier.send_digest(notifications, f"digest:{members}")


def _settle(session: Session, claim: _Claim, settled: tuple[str, str, float | None], now: datetime,
            retry: RetryPolicy) -> str:
    status, text, retry_after = settled
    row = _still_ours(session, claim)
    if row is None:
        return "lost"
    if status == "retry" and row.attempts >= retry.max_attempts and not _task_still_coming(session, claim.request):
        status, text = "dead", f"gave up after {row.attempts} attempts: {text}"
    if status == "retry":
        row.status, row.last_error = "pending", text
        row.next_attempt_at, row.claimed_until = now + retry.delay(row.attempts, retry_after), None
        return "retry"
    row.status, row.done_at, row.claimed_until = status, now, None
    if status == "done":
        row.result = text[:200]
    else:
        row.last_error = text
    _audit_outcome(session, row, claim.request, status, text, now)
    return status


def _task_still_coming(session: Session, request: Request) -> bool:
    """A task update waits for its task: while the task's create is still pending or in flight (a
    CRM failing creates for a while, or a dead dispatcher's claim waiting out its lease), failing to
    find the task is no reason to give the update up. The create's own attempts are bounded."""
    if not isinstance(request, TaskUpdate):
        return False
    create = session.scalars(select(OutboxRow.status).where(OutboxRow.idempotency_key == request.task_key)).first()
    return create in ("pending", "in_flight")


def _audit_outcome(session: Session, row: OutboxRow, request: Request, status: str, text: str,
                   now: datetime) -> None:
    lead = session.scalars(select(Lead).where(Lead.crm == request.lead.crm.value,
                                              Lead.crm_id == request.lead.crm_id)).first()
    kind = None
    if status == "done" and isinstance(request, Notification) and text.startswith("fallback:"):
        kind = "notification_fallback"
    elif status == "skipped" and isinstance(request, OwnerChange):
        kind = "reassignment_skipped_owner_changed"
    elif status == "skipped" and isinstance(request, LeadUpdate):
        kind = "status_update_skipped_status_changed"  # a person's newer status stands
    elif status == "dead":
        kind = "effect_failed"
    if kind is not None:
        audit.record(session, at=now, kind=kind, lead=lead, step_key=f"{kind}:{row.idempotency_key}",
                     details={"effect": row.action, "key": row.idempotency_key, "reason": text,
                              "outbox_id": row.id, "decision_audit_id": row.audit_id})
