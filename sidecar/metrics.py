"""`/metrics` in the Prometheus text format (version 0.0.4), written by hand: a few gauges and counters
read from the store at scrape time, so every process of a multi-instance install reports the same."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.store.models import AuditRow, Clock, IntakeItem, OutboxRow, SyncCursor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str,
            samples: Iterable[tuple[dict[str, object], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        rendered = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")
    return lines


def render(session: Session, now: datetime) -> str:
    clocks = session.execute(select(Clock.kind, Clock.status, Clock.state, func.count())
                             .where(Clock.status != "closed").group_by(Clock.kind, Clock.status, Clock.state)).all()
    steps = session.execute(select(AuditRow.pattern, AuditRow.action, func.count())
                            .where(AuditRow.actor == "system", AuditRow.pattern.is_not(None))
                            .group_by(AuditRow.pattern, AuditRow.action)).all()
    outbox = session.execute(select(OutboxRow.port, OutboxRow.status, func.count())
                             .group_by(OutboxRow.port, OutboxRow.status)).all()
    dead = sum(int(n) for _, status, n in outbox if status == "dead")
    polls = session.scalars(select(SyncCursor).where(SyncCursor.stream == "leads").order_by(SyncCursor.crm)).all()
    intake = session.scalar(select(func.count()).select_from(IntakeItem).where(IntakeItem.processed_at.is_(None)))
    waiting = OutboxRow.status.in_(("pending", "in_flight"))
    oldest = session.scalar(select(func.min(OutboxRow.created_at)).where(waiting))
    lines = [
        *_family("sidecar_open_clocks", "gauge", "Clocks not closed, by clock kind, status and lead state.",
                 (({"kind": k, "status": s, "state": st}, n) for k, s, st, n in clocks)),
        *_family("sidecar_steps_fired_total", "counter", "Engine decisions recorded, by typed pattern and action.",
                 (({"pattern": p, "action": a or "none"}, n) for p, a, n in steps)),
        *_family("sidecar_outbox_effects", "gauge", "Outbox rows by port and status (pending = depth).",
                 (({"port": p, "status": s}, n) for p, s, n in outbox)),
        *_family("sidecar_outbox_dead_letters", "gauge", "Effects that failed for good and need a fix.",
                 [({}, dead)]),
        *_family("sidecar_poll_age_seconds", "gauge", "Seconds since the last successful lead poll, per CRM.",
                 (({"crm": c.crm}, (now - c.last_poll_at).total_seconds()) for c in polls if c.last_poll_at)),
        *_family("sidecar_webhook_intake_waiting", "gauge", "Lead ids announced by webhooks, not read yet.",
                 [({}, intake or 0)]),
        *_family("sidecar_outbox_oldest_pending_seconds", "gauge",
                 "Age of the oldest effect not delivered yet (0: no backlog); grows while a CRM or Slack is down.",
                 [({}, (now - oldest).total_seconds() if oldest is not None else 0)]),
    ]
    return "\n".join(lines) + "\n"
