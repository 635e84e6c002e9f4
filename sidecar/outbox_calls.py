"""One claimed batch's calls to the ports, and each row settled on its own result.

`outbox.dispatch` claims due effects; this module performs them: tasks, notes and owner changes in
the CRM's batch calls where its writer has them, everything else one call (or one digest) at a
time, each claim's lease renewed right before its call, then every row settled (done, retry later,
skipped, dead) only while the claim is still ours. The rows of a call are renewed, read and settled
with one statement each, not one per row: a batch of a hundred first-response tasks is settled in
one short transaction, so the webhook drain applying the next leads waits less for the writer lock.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.ports import (
    ConflictError,
    LeadUpdate,
    NoteRequest,
    Notification,
    OwnerChange,
    PermanentError,
    TaskRequest,
    TaskUpdate,
    TransientError,
)
from sidecar.store.db import transaction
from sidecar.store.models import Lead, OutboxRow

if TYPE_CHECKING:
    from sidecar.outbox import Ports, Request, RetryPolicy

log = logging.getLogger(__name__)

# Effects a CRM writer may perform many at a time: the optional batch method (sidecar.ports
# BatchTaskWriter, BatchNoteWriter, BatchOwnerWriter) for each request type.
BATCH_METHODS: dict[type[Any], str] = {TaskRequest: "create_tasks", NoteRequest: "add_notes",
                                       OwnerChange: "change_owners"}
_CREATES = frozenset({"create_tasks", "add_notes"})  # told which keys were never sent before


@dataclass(frozen=True)
class Claim:
    id: int
    action: str
    key: str
    request: Request
    attempt: int  # the row's attempt count when claimed: the token that proves the claim is still ours


@dataclass
class Renewal:
    """A batch's claims all start their lease at the claim, but its calls go out one after another:
    under a slow CRM or Slack (or a busy machine) the last ones would start after their lease ran
    out, while another dispatcher takes them over and performs them too (the chaos run saw a
    hundred Slack messages posted twice). So each claim's lease starts again right before its own
    call, and a claim already taken over is dropped instead of performed a second time. One UPDATE
    renews a whole batch call's claims (RETURNING says which still held)."""

    sessions: sessionmaker[Session]
    lease: timedelta
    clock: Callable[[], datetime]

    def __call__(self, group: list[Claim]) -> list[Claim]:
        until = self.clock() + self.lease
        with transaction(self.sessions) as session:
            # (id, attempts): a claim whose row was claimed again since (attempts moved on) is not ours.
            renewed = set(session.scalars(
                update(OutboxRow).where(OutboxRow.status == "in_flight",
                                        tuple_(OutboxRow.id, OutboxRow.attempts).in_(
                                            [(claim.id, claim.attempt) for claim in group]))
                .values(claimed_until=until).returning(OutboxRow.id),
                execution_options={"synchronize_session": False}))
        kept = []
        for claim in group:
            if claim.id in renewed:
                kept.append(claim)
            else:
                log.warning("effect %s: claim lost before its call (lease expired and taken over); "
                            "not performed here", claim.key)
        return kept


def batch_writes(ports: Ports, sends: list[list[Claim]]
                  ) -> tuple[list[list[Claim]], dict[tuple[str, str], list[Claim]]]:
    """Tasks, notes and owner changes for a CRM whose writer can batch them go out together, by kind
    (1,000 of them in a handful of calls). Claim order is kept within a kind; an effect that
    depends on another is never claimed with it (`outbox._claim` waits for the prerequisite to be done)."""
    rest: list[list[Claim]] = []
    batches: dict[tuple[str, str], list[Claim]] = {}
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


def perform_batch(sessions: sessionmaker[Session], ports: Ports, crm: str, method: str, group: list[Claim],
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
        rows = _rows_of(session, group)
        for claim in group:
            result = results.get(claim.key, TransientError("the batch answer had no result for this effect"))
            outcomes[settle(session, claim, _outcome(result, claim.key), now, retry, rows)] += 1


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


def _rows_of(session: Session, claims: list[Claim]) -> dict[int, OutboxRow]:
    """The claims' rows by id, read with one query (locked on PostgreSQL, in id order, until the
    settle commits: a dispatcher taking over an expired claim waits, then sees it settled)."""
    query = select(OutboxRow).where(OutboxRow.id.in_([claim.id for claim in claims])).order_by(OutboxRow.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.id: row for row in session.scalars(query)}


def _still_ours(session: Session, claim: Claim, rows: Mapping[int, OutboxRow] | None = None) -> OutboxRow | None:
    """The row, if this dispatcher's claim still holds: a lease that ran out may have been taken
    over (and settled) by another dispatcher, whose result must not be overwritten. `rows`: the
    claim's row read already (`_rows_of`), else it is read here."""
    if rows is not None:
        row = rows.get(claim.id)
    else:
        row = session.get(OutboxRow, claim.id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if row is None or row.status != "in_flight" or row.attempts != claim.attempt:
        log.warning("effect %s: claim lost (lease expired and taken over); result not recorded", claim.key)
        return None
    return row


def hold(session: Session, claim: Claim, release: datetime) -> None:
    """Back to pending until the recipient's window frees up; holding is not a failed attempt."""
    row = _still_ours(session, claim)
    if row is None:
        return
    row.status, row.claimed_until, row.attempts = "pending", None, row.attempts - 1
    row.next_attempt_at, row.last_error = release, f"held: warning limit reached for {row.recipient}"


def perform_all(sessions: sessionmaker[Session], ports: Ports, group: list[Claim], now: datetime,
                 retry: RetryPolicy, outcomes: Counter[str]) -> None:
    """Perform one message: a single effect, or several warnings as one digest (settled alike)."""
    try:
        settled = _outcome(_perform(ports, group[0]) if len(group) == 1 else _digest(ports, group), group[0].key)
    except Exception as exc:  # mapped below: transient, conflict, permanent, or unexpected
        settled = _outcome(exc, group[0].key)
    with transaction(sessions) as session:
        rows = _rows_of(session, group)
        for claim in group:
            outcomes[settle(session, claim, settled, now, retry, rows)] += 1


def _digest(ports: Ports, group: list[Claim]) -> str:
    if ports.notifier is None:
        raise PermanentError("no notifier configured: set SIDECAR_SLACK_BOT_TOKEN")
    notifications = [claim.request for claim in group if isinstance(claim.request, Notification)]
    # The members name the digest: a retry of the same group is recognisably the same message.
    members = hashlib.sha256("\n".join(sorted(claim.key for claim in group)).encode()).hexdigest()[:16]
    return "digest:" + ports.notifier.send_digest(notifications, f"digest:{members}")


def settle(session: Session, claim: Claim, settled: tuple[str, str, float | None], now: datetime,
            retry: RetryPolicy, rows: Mapping[int, OutboxRow] | None = None) -> str:
    status, text, retry_after = settled
    row = _still_ours(session, claim, rows)
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
    """An outcome a person should see in the lead's history gets its audit row; a plain success
    (nearly every effect) needs none, and its lead is not even looked up."""
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
        lead = session.scalars(select(Lead).where(Lead.crm == request.lead.crm.value,
                                                  Lead.crm_id == request.lead.crm_id)).first()
        audit.record(session, at=now, kind=kind, lead=lead, step_key=f"{kind}:{row.idempotency_key}",
                     details={"effect": row.action, "key": row.idempotency_key, "reason": text,
                              "outbox_id": row.id, "decision_audit_id": row.audit_id})


def _perform(ports: Ports, claim: Claim) -> str:
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
