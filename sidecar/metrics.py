"""`/metrics` in the Prometheus text format (version 0.0.4), written by hand.

Gauges and counters of the engine's work are read from the store at scrape time, so every process of
a multi-instance install reports the same: open clocks, steps fired, the firing lag histogram, the
outbox and poll age. CRM API calls, the daily quota left and webhook answers are this process's own
(sidecar.meters).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.meters import METERS, Meters
from sidecar.store.models import AuditRow, Clock, IntakeItem, OutboxRow, SyncCursor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds between a step's due instant and when the engine fired it: the scheduler ticks every
# minute, so most land under 60 s; minutes to hours mean the jobs stalled or the process was down.
LAG_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str,
            samples: Iterable[tuple[dict[str, object], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        rendered = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")
    return lines


def _lag_histogram(session: Session) -> list[str]:
    """Firing lag of every step the engine fired with a due instant, by pattern (cumulative buckets)."""
    rows = session.execute(select(AuditRow.pattern, AuditRow.at, AuditRow.details).where(
        AuditRow.step_key.is_not(None), AuditRow.pattern.is_not(None), AuditRow.actor == "system")).all()
    lags: dict[str, list[float]] = {}
    for pattern, at, details in rows:
        due = (details or {}).get("due_at")
        if isinstance(due, str):
            lags.setdefault(str(pattern), []).append(max(0.0, (at - datetime.fromisoformat(due)).total_seconds()))
    name = "sidecar_step_firing_lag_seconds"
    lines = [f"# HELP {name} Seconds from a step's due instant to its firing, by pattern.",
             f"# TYPE {name} histogram"]
    for pattern, values in sorted(lags.items()):
        label = f'pattern="{_label(pattern)}"'
        for bound in LAG_BUCKETS:
            lines.append(f'{name}_bucket{{{label},le="{bound:g}"}} {sum(v <= bound for v in values)}')
        lines.append(f'{name}_bucket{{{label},le="+Inf"}} {len(values)}')
        lines.append(f"{name}_sum{{{label}}} {sum(values):g}")
        lines.append(f"{name}_count{{{label}}} {len(values)}")
    return lines


def render(session: Session, now: datetime, meters: Meters = METERS) -> str:
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
    calls, quota, webhooks = meters.snapshot()
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
        *_lag_histogram(session),
        *_family("sidecar_crm_api_calls_total", "counter", "Requests this process sent to each CRM's API.",
                 (({"crm": crm}, n) for crm, n in sorted(calls.items()))),
        *_family("sidecar_crm_api_quota_remaining", "gauge",
                 "Daily API calls left, as the CRM last reported (Sforce-Limit-Info, X-HubSpot-RateLimit-Daily).",
                 (({"crm": crm}, max(0, limit - used)) for crm, (used, limit) in sorted(quota.items()))),
        *_family("sidecar_crm_api_quota_limit", "gauge", "The CRM's daily API call limit, as it last reported.",
                 (({"crm": crm}, limit) for crm, (_used, limit) in sorted(quota.items()))),
        *_family("sidecar_webhook_requests_total", "counter", "Webhook requests answered, by route and HTTP status.",
                 (({"route": route, "status": status}, n) for (route, status), n in sorted(webhooks.items()))),
        *_family("sidecar_outbox_oldest_pending_seconds", "gauge",
                 "Age of the oldest effect not delivered yet (0: no backlog); grows while a CRM or Slack is down.",
                 [({}, (now - oldest).total_seconds() if oldest is not None else 0)]),
    ]
    return "\n".join(lines) + "\n"
