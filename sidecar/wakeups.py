"""When the jobs next have work: the earliest step due and the earliest effect due.

`sidecar run` wakes `evaluate` at the earliest `next_due_at` and `dispatch` at the earliest
`next_attempt_at` instead of waiting for their fixed intervals (which stay as a safety net), so a
step fires within a second of its due instant. Both queries read one indexed column's minimum.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.store.db import reading
from sidecar.store.models import Clock, OutboxRow


def next_step_due(sessions: sessionmaker[Session], after: datetime | None = None) -> datetime | None:
    """The earliest `next_due_at` of a running clock (later than `after` when given: a tick at
    `after` left the ones due by then to be retried, e.g. a lead whose owner change has not settled)."""
    query = select(func.min(Clock.next_due_at)).where(Clock.status == "open", Clock.next_due_at.is_not(None))
    if after is not None:
        query = query.where(Clock.next_due_at > after)
    with reading(sessions) as session:
        return _aware(session.scalar(query))


def next_effect_due(sessions: sessionmaker[Session], after: datetime) -> datetime | None:
    """The earliest pending effect due later than `after` (a quiet-hours release, a retry, a held warning)."""
    query = select(func.min(OutboxRow.next_attempt_at)).where(OutboxRow.status == "pending",
                                                             OutboxRow.next_attempt_at > after)
    with reading(sessions) as session:
        return _aware(session.scalar(query))


def _aware(value: datetime | None) -> datetime | None:
    # Belt and braces: the column type makes stored instants aware, an aggregate may come back raw.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
