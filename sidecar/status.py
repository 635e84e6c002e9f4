"""What `sidecar status` reports: clocks, what is due soon, the outbox and the last polls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.store.models import Clock, IntakeItem, OutboxRow, SyncCursor


@dataclass(frozen=True)
class Status:
    open_clocks: int
    paused_clocks: int
    due_next_hour: int
    outbox: dict[str, int]
    dead: list[tuple[str, str, str]]  # (key, action, reason), newest first
    last_polls: dict[str, datetime | None]
    # Webhook-announced ids the CRM refused to read, set aside: (crm, id, why), newest first.
    dead_intake: list[tuple[str, str, str]] = field(default_factory=list)


def gather(session: Session, now: datetime, dead_limit: int = 10) -> Status:
    # SLA clocks: what "running" and "due" mean to an admin; stuck-lead clocks run beside them.
    clocks = dict(session.execute(select(Clock.status, func.count()).where(Clock.kind == "sla")
                                  .group_by(Clock.status)).all())
    due = session.scalar(select(func.count()).select_from(Clock).where(
        Clock.kind == "sla", Clock.status == "open", Clock.next_due_at <= now + timedelta(hours=1))) or 0
    outbox = dict(session.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)).all())
    dead = [(row.idempotency_key, row.action, row.last_error or "") for row in session.scalars(
        select(OutboxRow).where(OutboxRow.status == "dead").order_by(OutboxRow.done_at.desc())
        .limit(dead_limit))]
    polls = {row.crm: row.last_poll_at for row in session.scalars(
        select(SyncCursor).where(SyncCursor.stream == "leads"))}
    dead_intake = [(row.crm, row.crm_id, row.error or "") for row in session.scalars(
        select(IntakeItem).where(IntakeItem.error.is_not(None)).order_by(IntakeItem.id.desc()).limit(dead_limit))]
    return Status(int(clocks.get("open", 0)), int(clocks.get("paused", 0)), int(due),
                  {str(k): int(v) for k, v in outbox.items()}, dead, polls, dead_intake)
