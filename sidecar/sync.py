"""Polling and webhook intake: CRM changes into the store, cursor committed with the data.

Both paths end in `ingest.apply_snapshot`, then the event-driven patterns (`patterns.on_applied`);
a webhook only tells us *which* leads to read.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, bindparam, func, literal, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.domain import LeadSnapshot
from sidecar.engine import patterns
from sidecar.engine.patterns.shared import EngineContext
from sidecar.failures import describe, is_network_problem
from sidecar.ingest import apply_snapshot
from sidecar.ports import ChangePage, CrmReader, Cursor, PermanentError, TransientError
from sidecar.store import preloaded
from sidecar.store.db import reading, transaction
from sidecar.store.locks import lock_leads
from sidecar.store.models import IntakeItem, Rep, SyncCursor, Team

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
    """Apply one snapshot in a savepoint, then let the event-driven patterns react to it, each in
    its own; a snapshot that fails is audited and the rest go on, instead of one bad record
    blocking its page (and the cursor) forever."""
    try:
        with session.begin_nested():
            applied = apply_snapshot(session, ctx.book, snapshot, recorded_at=now)
        patterns.on_applied(session, ctx, applied, now)
        return len(applied.events)
    except OperationalError:
        raise  # the database, not this record (disk full, connection lost): the page retries whole
    except Exception as exc:  # reported in the audit and the log, never dropped silently
        log.exception("could not apply %s lead %s", snapshot.crm.value, snapshot.crm_id)
        audit.record(session, at=snapshot.crm_modified_at, kind="ingest_failed",
                     details={"crm": snapshot.crm.value, "crm_id": snapshot.crm_id,
                              "error": f"{type(exc).__name__}: {exc}"[:500]})
        return 0


def apply_snapshots(session: Session, ctx: EngineContext, snapshots: list[LeadSnapshot], now: datetime) -> int:
    """Apply `snapshots` (ingest, then the patterns) in order; returns how many events they recorded.

    Optimistic: each group of APPLY_CHUNK snapshots runs in ONE savepoint, with no savepoint per
    snapshot or per pattern (those were a sixth of the cost of a lead: each flushes and snapshots
    the session). When anything in the group fails, that savepoint is rolled back and the group is
    applied again one snapshot at a time, each isolated as before (`_apply_one`): a bad record or a
    failing pattern is audited and the rest of the group still applies, exactly as if it had been
    isolated from the start (all of a pattern's effects are rows, rolled back with the savepoint)."""
    _preload_directory(session, snapshots)
    events = 0
    for start in range(0, len(snapshots), APPLY_CHUNK):
        group, recorded = snapshots[start:start + APPLY_CHUNK], 0
        try:
            with session.begin_nested():
                for snapshot in group:
                    applied = apply_snapshot(session, ctx.book, snapshot, recorded_at=now)
                    patterns.on_applied(session, ctx, applied, now, isolate=False)
                    recorded += len(applied.events)
            events += recorded
            continue
        except OperationalError:
            raise  # the database, not a record: the caller's transaction retries whole
        except Exception:  # found again, and audited and logged then, by the isolated retry below
            log.debug("a snapshot of %d failed: applying them one at a time", len(group))
        events += sum(_apply_one(session, ctx, snapshot, now) for snapshot in group)
    return events


def _preload_directory(session: Session, snapshots: list[LeadSnapshot]) -> None:
    """The teams (a handful of rows: all of them) and the snapshots' owners and the teams' managers,
    in two queries for the whole batch: ingest and the patterns look them up several times per lead
    (`preloaded.get`, `ownership.queue_ids`)."""
    teams = list(session.scalars(select(Team)))
    preloaded.keep_all(session, Team, teams)
    rep_ids = {s.owner_id for s in snapshots if s.owner_id} | {t.manager_id for t in teams if t.manager_id}
    if rep_ids:
        preloaded.keep(session, session.scalars(select(Rep).where(Rep.id.in_(rep_ids))))


def apply_page(sessions: sessionmaker[Session], ctx: EngineContext, crm: str, page: ChangePage,
               stats: PollStats, now: datetime) -> None:
    """One page of changes and the cursor that covers it, in one transaction (polling and backfill)."""
    with transaction(sessions) as session:
        lock_leads(session, crm, (snapshot.crm_id for snapshot in page.snapshots))
        stats.events += apply_snapshots(session, ctx, list(page.snapshots), now)
        for crm_id, why in page.rejected.items():  # the connector could not read it: audited, page goes on
            audit.record(session, at=now, kind="ingest_failed", details={"crm": crm, "crm_id": crm_id, "error": why})
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


def drain_intake(sessions: sessionmaker[Session], ctx: EngineContext, reader: CrmReader, now: datetime,
                 batch: int = 100, lease: timedelta = timedelta(minutes=5),
                 applied_hook: Callable[[], None] | None = None, linger: timedelta = timedelta(0),
                 clock: Callable[[], datetime] | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Read announced leads, `batch` ids per CRM call, and apply them like polled changes. An id the
    CRM refuses to read is dead-lettered on its own (`error` set, shown by `sidecar status`) and
    never holds up the ids behind it; polling still covers that lead if it exists.

    Several sidecars may drain one intake: each batch is claimed in a short transaction, read from
    the CRM with no transaction open, and applied only while the claim is still ours (see
    `_claim_intake`), so each id is applied by one sidecar. The CRM is never read inside a
    transaction: on SQLite a write transaction holds the only writer lock, and every webhook's
    insert would wait behind the CRM's answer (and its rate-limit pauses). `applied_hook` is called
    after each transaction that applied leads (their effects, e.g. a first-response task, are stored).
    `linger` (with `clock`, read again before each claim): see `_linger`."""
    applied = 0
    crm = reader.crm.value
    while True:
        if linger and clock is not None:
            _linger(sessions, crm, batch, linger, clock, sleep)
        claimed = _claim_intake(sessions, crm, now, batch, lease)
        if claimed is None:
            return applied
        token, ids = claimed
        try:
            snapshots, refused = read_isolating(reader, ids)
            applied += _apply_claimed(sessions, ctx, crm, token, ids, snapshots, refused, now, applied_hook)
        except Exception:  # the ids go back to the queue at once, for whichever sidecar drains next
            _release_intake(sessions, token)
            raise


APPLY_CHUNK = 10  # leads applied per write transaction by the webhook drain


def _linger(sessions: sessionmaker[Session], crm: str, batch: int, linger: timedelta,
            clock: Callable[[], datetime], sleep: Callable[[float], None]) -> None:
    """Before claiming less than a full batch, let the oldest waiting id reach `linger` of age (at
    most `linger` of waiting). Each read costs the same few CRM calls (HubSpot: the batch read and
    one association read per engagement type) for one lead or a hundred: claimed the moment they
    arrive, webhooks at 100 a second went out in batches of a dozen and spent HubSpot's 100 calls
    per 10 s in three seconds, after which every call waited for the window to pass."""
    with reading(sessions) as session:
        free = (IntakeItem.crm == crm, IntakeItem.processed_at.is_(None), IntakeItem.claimed_until.is_(None))
        waiting = session.scalar(select(func.count()).select_from(
            select(IntakeItem.id).where(*free).limit(batch).subquery()))
        oldest = session.scalar(select(IntakeItem.received_at).where(*free).order_by(IntakeItem.id).limit(1))
    if not waiting or waiting >= batch or oldest is None:
        return
    oldest = oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=UTC)
    wait = min(linger, oldest + linger - clock()).total_seconds()
    if wait > 0:
        sleep(wait)


def _apply_claimed(sessions: sessionmaker[Session], ctx: EngineContext, crm: str, token: str, ids: list[str],
                   snapshots: list[LeadSnapshot], refused: dict[str, str], now: datetime,
                   applied_hook: Callable[[], None] | None = None) -> int:
    """Apply what was read for the rows still carrying `token`, and mark them processed, a few leads
    per transaction (the SQLite writer lock is let go often enough that a webhook's insert waits for
    a few leads' worth of work, not a whole batch's); returns how many snapshots were applied."""
    applied = 0
    read = {snapshot.crm_id: snapshot for snapshot in snapshots}
    for start in range(0, len(ids), APPLY_CHUNK):
        chunk = ids[start:start + APPLY_CHUNK]
        with transaction(sessions) as session:
            mine = _still_claimed(session, token, chunk)
            if not mine:  # our lease ran out and another sidecar took the batch over: it applies it
                log.warning("%s webhook batch: claim lost (lease expired and taken over); not applied", crm)
                return applied
            wanted = {item.crm_id for item in mine}
            todo = [read[crm_id] for crm_id in chunk if crm_id in wanted and crm_id in read]
            lock_leads(session, crm, (snapshot.crm_id for snapshot in todo))
            apply_snapshots(session, ctx, todo, now)
            for item in mine:
                item.processed_at, item.claim_token, item.claimed_until = now, None, None
                if item.crm_id in refused:
                    item.error = refused[item.crm_id][:500]
        applied += len(todo)
        if todo and applied_hook is not None:
            applied_hook()
    for crm_id, why in refused.items():
        log.warning("%s refused to read webhook id %.40r, set aside: %s", crm, crm_id, why)
    return applied


def _claim_intake(sessions: sessionmaker[Session], crm: str, now: datetime, batch: int,
                  lease: timedelta) -> tuple[str, list[str]] | None:
    """Claim the oldest unprocessed ids no live claim holds: (token, distinct lead ids), or None.
    Every other free pending event about those leads up to the newest seen is claimed with them:
    a burst of events about the same leads costs one read per lead (an event stored after this
    claim may announce a change the read predates: it waits for its own read).
    On PostgreSQL rows another sidecar is claiming at this instant are skipped (SKIP LOCKED), not
    waited for; a claim whose lease has passed belongs to a sidecar that died, and is taken over."""
    with transaction(sessions) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        free = (IntakeItem.crm == crm, IntakeItem.processed_at.is_(None),
                or_(IntakeItem.claimed_until.is_(None), IntakeItem.claimed_until < now))
        query = select(IntakeItem).where(*free).order_by(IntakeItem.id).limit(batch)
        if postgres:
            query = query.with_for_update(skip_locked=True)
        items = list(session.scalars(query))
        if not items:
            return None
        ids = list(dict.fromkeys(item.crm_id for item in items))
        newest = session.scalar(select(func.max(IntakeItem.id)).where(*free))
        more = select(IntakeItem).where(*free, IntakeItem.id > items[-1].id, IntakeItem.id <= newest,
                                        IntakeItem.crm_id.in_(ids))
        if postgres:
            more = more.with_for_update(skip_locked=True)
        items.extend(session.scalars(more))
        token = uuid.uuid4().hex
        for item in items:
            item.claim_token, item.claimed_until = token, now + lease
        return token, ids


def _still_claimed(session: Session, token: str, crm_ids: list[str]) -> list[IntakeItem]:
    """The rows about `crm_ids` that still carry our token, locked until the apply commits (a sidecar
    taking over an expired claim waits for that commit, then finds them processed)."""
    query = select(IntakeItem).where(IntakeItem.claim_token == token, IntakeItem.processed_at.is_(None),
                                     IntakeItem.crm_id.in_(crm_ids))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return list(session.scalars(query.order_by(IntakeItem.id)))


def _release_intake(sessions: sessionmaker[Session], token: str) -> None:
    """Give a batch back after a failed read or apply; if even that fails (database gone), the
    lease runs out and the next drainer takes the batch over anyway."""
    try:
        with transaction(sessions) as session:
            session.execute(update(IntakeItem)
                            .where(IntakeItem.claim_token == token, IntakeItem.processed_at.is_(None))
                            .values(claim_token=None, claimed_until=None))
    except SQLAlchemyError as exc:
        log.warning("could not give back a claimed webhook batch (its lease will run out): %s", describe(exc))


def release_orphaned_intake(sessions: sessionmaker[Session]) -> int:
    """At start on SQLite (one instance per file), give back every intake claim: it was left by a
    process that died while draining, and waiting out its lease would only delay those webhooks.
    On PostgreSQL a claim may belong to a live instance: its lease decides. Returns how many."""
    with transaction(sessions) as session:
        if session.get_bind().dialect.name != "sqlite":
            return 0
        result = session.execute(update(IntakeItem).where(IntakeItem.claim_token.is_not(None),
                                                          IntakeItem.processed_at.is_(None))
                                 .values(claim_token=None, claimed_until=None))
        return int(getattr(result, "rowcount", 0) or 0)
