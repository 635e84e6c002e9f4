"""Polling and webhook intake: CRM changes into the store, cursor committed with the data.

Both paths end in `ingest.apply_snapshot`, then the event-driven patterns (`patterns.on_applied`);
a webhook only tells us *which* leads to read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.domain import LeadSnapshot
from sidecar.engine import patterns
from sidecar.engine.patterns.shared import EngineContext
from sidecar.ingest import apply_snapshot
from sidecar.ports import ChangePage, CrmReader, Cursor
from sidecar.store.db import transaction
from sidecar.store.models import IntakeItem, SyncCursor

log = logging.getLogger(__name__)


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
    """Store (delivery id, lead id) pairs; repeated deliveries are ignored. Returns how many are new."""
    added = 0
    for delivery_id, crm_id in items:
        exists = session.scalars(select(IntakeItem.id).where(
            IntakeItem.crm == crm, IntakeItem.delivery_id == delivery_id)).first()
        if exists is None:
            try:
                with session.begin_nested():
                    session.add(IntakeItem(crm=crm, delivery_id=delivery_id, crm_id=crm_id, received_at=now))
                added += 1
            except IntegrityError:
                continue  # the same delivery raced in through another request
    return added


def drain_intake(sessions: sessionmaker[Session], ctx: EngineContext, reader: CrmReader, now: datetime,
                 batch: int = 100) -> int:
    """Read announced leads, `batch` ids per CRM call, and apply them like polled changes."""
    applied = 0
    while True:
        with transaction(sessions) as session:
            pending = select(IntakeItem).where(IntakeItem.crm == reader.crm.value,
                                               IntakeItem.processed_at.is_(None))
            items = list(session.scalars(pending.order_by(IntakeItem.id).limit(batch)))
            if not items:
                return applied
            ids = list(dict.fromkeys(item.crm_id for item in items))
            for snapshot in reader.read_leads(ids):
                _apply_one(session, ctx, snapshot, now)
                applied += 1
            for item in items:
                item.processed_at = now
