"""Polling and webhook intake: CRM changes into the store, cursor committed with the data.

Both paths end in `ingest.apply_snapshot`, then the event-driven patterns (`patterns.on_applied`);
a webhook only tells us *which* leads to read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, bindparam, func, literal, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.domain import LeadSnapshot
from sidecar.engine import patterns
from sidecar.engine.patterns.shared import EngineContext
from sidecar.failures import describe, is_network_problem
from sidecar.ingest import apply_snapshot
from sidecar.ports import ChangePage, CrmReader, Cursor, PermanentError, TransientError
from sidecar.store.db import reading, transaction
from sidecar.store.models import IntakeItem, SyncCursor

log = logging.getLogger(__name__)
DELIVERY_ID_WIDTH, CRM_ID_WIDTH = 100, 64  # the intake table's columns


@dataclass
class PollStats:
    pages: int = 0
    snapshots: int = 0
    events: int = 0


def _cursor_row(session: Session, crm: str, stream: str) -> SyncCursor:
    row = session.get(SyncCursor, (crm, stream))
    if row is None:
        row = SyncCursor(crm=crm, stream=stream, cursor_at=None, cursor_ids=[], last_poll_at=None)
        session.add(row)
    return row


def poll(sessions: sessionmaker[Session], ctx: EngineContext, reader: CrmReader, now: datetime) -> PollStats:
    """Read everything changed since the stored cursor; each page commits with its cursor."""
    crm = reader.crm.value
    with transaction(sessions) as session:
        row = _cursor_row(session, crm, "leads")
        cursor = Cursor(row.cursor_at, tuple(row.cursor_ids))
    stats = PollStats()
    for page in reader.read_changes(cursor):
        apply_page(sessions, ctx, crm, page, stats, now)
    with transaction(sessions) as session:
        _cursor_row(session, crm, "leads").last_poll_at = now
    return stats


def record_poll_outcome(sessions: sessionmaker[Session], crm: str, now: datetime, error: str | None,
                        failing_since: datetime | None) -> None:
    """Keep the last poll's outcome in the store: `sidecar status` runs in another process than the
    poller and cannot see its in-memory failure tracker."""
    with transaction(sessions) as session:
        row = _cursor_row(session, crm, "leads")
        row.last_attempt_at, row.last_error, row.failing_since = now, error[:500] if error else None, failing_since


def _apply_one(session: Session, ctx: EngineContext, snapshot: LeadSnapshot, now: datetime) -> int:
    """Apply one snapshot in a savepoint, then let the event-driven patterns react to it; a snapshot
    that fails is audited and the rest go on, instead of one bad record blocking its page (and the
    cursor) forever."""
    try:
        with session.begin_nested():
            applied = apply_snapshot(session, ctx.book, snapshot)
        patterns.on_applied(session, ctx, applied, now)
        return len(applied.events)
    except Exception as exc:  # reported in the audit and the log, never dropped silently
        log.exception("could not apply %s lead %s", snapshot.crm.value, snapshot.crm_id)
        audit.record(session, at=snapshot.crm_modified_at, kind="ingest_failed",
                     details={"crm": snapshot.crm.value, "crm_id": snapshot.crm_id,
                              "error": f"{type(exc).__name__}: {exc}"[:500]})
        return 0


def apply_page(sessions: sessionmaker[Session], ctx: EngineContext, crm: str, page: ChangePage,
               stats: PollStats, now: datetime) -> None:
    """One page of changes and the cursor that covers it, in one transaction (polling and backfill)."""
    with transaction(sessions) as session:
        for snapshot in page.snapshots:
            stats.events += _apply_one(session, ctx, snapshot, now)
        row = _cursor_row(session, crm, "leads")
        if page.cursor.at is not None and (row.cursor_at is None or page.cursor.at >= row.cursor_at):
            row.cursor_at, row.cursor_ids = page.cursor.at, list(page.cursor.seen_ids)
    stats.pages += 1
    stats.snapshots += len(page.snapshots)


def enqueue_intake(session: Session, crm: str, items: Iterable[tuple[str, str]], now: datetime) -> int:
    """Store (delivery id, lead id) pairs; repeated deliveries are ignored. Returns how many are new.

    One INSERT ... ON CONFLICT DO NOTHING for the whole batch (sent as a few multi-row statements):
    a webhook of any allowed size is stored in milliseconds, and a delivery racing in through another
    request or instance is skipped by the unique constraint. The receivers check ids by shape; an id
    longer than its column (no CRM id is) is dropped here too, so one can never fail the batch."""
    first: dict[str, str] = {}
    for delivery_id, crm_id in items:
        if len(delivery_id) > DELIVERY_ID_WIDTH or len(crm_id) > CRM_ID_WIDTH:
            log.warning("%s webhook: dropped an id too long to be one (%d characters)", crm, len(crm_id))
            continue
        first.setdefault(delivery_id, crm_id)
    if not first:
        return 0
    columns = ["crm", "delivery_id", "crm_id", "received_at"]
    if session.get_bind().dialect.name == "postgresql":
        # Two array parameters and one statement: psycopg spends more time splitting a 20,000-row
        # VALUES list than PostgreSQL spends inserting it.
        pairs = func.unnest(bindparam("ds", list(first), ARRAY(String)),
                            bindparam("cs", list(first.values()), ARRAY(String))
                            ).table_valued("d", "c").render_derived()
        # WHERE true: without it PostgreSQL would read "ON CONFLICT" as the start of a join condition.
        source = select(literal(crm, String), pairs.c.d, pairs.c.c,
                        literal(now, IntakeItem.received_at.type)).where(true())
        insert = postgresql.insert(IntakeItem).from_select(columns, source)
        returning = insert.on_conflict_do_nothing(index_elements=["crm", "delivery_id"]).returning(IntakeItem.id)
        return len(session.connection().execute(returning).all())
    rows = [dict(zip(columns, (crm, d, c, now), strict=True)) for d, c in first.items()]
    statement = sqlite.insert(IntakeItem).on_conflict_do_nothing(index_elements=["crm", "delivery_id"])
    # RETURNING lists only the rows inserted (executemany's rowcount is not summed by every driver).
    return len(session.connection().execute(statement.returning(IntakeItem.id), rows).all())


def _transient(exc: Exception) -> bool:
    return isinstance(exc, TransientError) or is_network_problem(exc)


def read_isolating(reader: CrmReader, ids: list[str]) -> tuple[list[LeadSnapshot], dict[str, str]]:
    """Read `ids`; when the CRM refuses the batch, halve it until the ids it refuses stand alone.
    Returns the snapshots read and {id: why} for the refused ids. A transient failure (CRM down,
    rate limit) is raised at once: the ids stay queued. So is a failure of every part of a batch
    of several ids (an expired session, a revoked scope): that is not about the ids."""
    reads_ok = 0

    def read(part: list[str]) -> tuple[list[LeadSnapshot], dict[str, str]]:
        nonlocal reads_ok
        try:
            snapshots = reader.read_leads(part)
        except Exception as exc:
            if _transient(exc):
                raise
            if len(part) == 1:
                return [], {part[0]: describe(exc)}
            (left, left_refused), (right, right_refused) = read(part[: len(part) // 2]), read(part[len(part) // 2:])
            return left + right, {**left_refused, **right_refused}
        reads_ok += 1
        return snapshots, {}

    snapshots, refused = read(ids)
    if refused and reads_ok == 0 and len(ids) > 1:
        raise PermanentError(f"no part of a batch of {len(ids)} ids could be read, e.g. "
                             f"{next(iter(refused.values()))}")
    return snapshots, refused


APPLY_CHUNK = 10  # leads applied per write transaction by the webhook drain


def drain_intake(sessions: sessionmaker[Session], ctx: EngineContext, reader: CrmReader, now: datetime,
                 batch: int = 100) -> int:
    """Read announced leads, `batch` ids per CRM call, and apply them like polled changes. An id the
    CRM refuses to read is dead-lettered on its own (`error` set, shown by `sidecar status`) and
    never holds up the ids behind it; polling still covers that lead if it exists.

    The CRM is read between two short transactions, never inside one: on SQLite a write
    transaction holds the only writer lock, and every webhook's insert would wait behind the CRM's
    answer (and its rate-limit pauses). Applying is safe however late: a snapshot older than the
    lead's stored one changes nothing, and the same snapshot twice records nothing."""
    applied = 0
    crm = reader.crm.value
    while True:
        with reading(sessions) as session:
            pending = (IntakeItem.crm == crm, IntakeItem.processed_at.is_(None))
            # Up to `batch` distinct leads, oldest announcement first, and every pending item for
            # them up to `last`: a burst of events about the same leads costs one read per lead.
            last = session.scalar(select(func.max(IntakeItem.id)).where(*pending))
            if last is None:
                return applied
            first_seen = func.min(IntakeItem.id)
            ids = list(session.scalars(select(IntakeItem.crm_id).where(*pending, IntakeItem.id <= last)
                                       .group_by(IntakeItem.crm_id).order_by(first_seen).limit(batch)))
        snapshots, refused = read_isolating(reader, ids)  # may raise: nothing is marked, tried again later
        # A few leads per transaction: the writer lock is let go often enough that a webhook's
        # insert waits for a few leads' worth of work, not a whole batch's.
        for start in range(0, len(snapshots), APPLY_CHUNK):
            with transaction(sessions) as session:
                for snapshot in snapshots[start:start + APPLY_CHUNK]:
                    _apply_one(session, ctx, snapshot, now)
                    applied += 1
        with transaction(sessions) as session:
            # Items announced after `last` may carry a newer change: they wait for the next read.
            for item in session.scalars(select(IntakeItem).where(*pending, IntakeItem.id <= last,
                                                                 IntakeItem.crm_id.in_(ids))):
                item.processed_at = now
                if item.crm_id in refused:
                    item.error = refused[item.crm_id][:500]
            for crm_id, why in refused.items():
                log.warning("%s refused to read webhook id %.40r, set aside: %s", reader.crm.value, crm_id, why)
