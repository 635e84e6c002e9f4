"""The review queues: leads a person has to look at, as rows (`sidecar queue list|resolve`).

Two queues: `ops_review` (a lead stuck for the policy's last multiple of its window) and
`compliance` (a lead on compliance hold, resolved only by a clear or reject decision). A pattern
opens an item once per (queue, lead, reason): firing again while the item is open adds nothing.
Time in review is `now - opened_at`; `last_surfaced_at` says when the queue's channel last saw it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.store.models import Lead, ReviewItem

OPS_REVIEW = "ops_review"
COMPLIANCE = "compliance"
QUEUES = (OPS_REVIEW, COMPLIANCE)


class ReviewError(Exception):
    """No such item, or it cannot be resolved this way; the message says what to do."""


def open_item_of(session: Session, queue: str, lead_id: int, reason: str | None = None) -> ReviewItem | None:
    query = select(ReviewItem).where(ReviewItem.queue == queue, ReviewItem.lead_id == lead_id,
                                     ReviewItem.resolved_at.is_(None))
    if reason is not None:
        query = query.where(ReviewItem.reason == reason)
    return session.scalars(query.order_by(ReviewItem.id)).first()


def open_item(session: Session, *, queue: str, lead: Lead, reason: str, pattern: str, rule_id: str | None,
              policy_version: str | None, details: dict[str, Any], now: datetime) -> tuple[ReviewItem, bool]:
    """The open item for (queue, lead, reason), created if there is none; (item, created now)."""
    existing = open_item_of(session, queue, lead.id, reason)
    if existing is not None:
        return existing, False
    item = ReviewItem(queue=queue, lead_id=lead.id, reason=reason[:200], pattern=pattern, rule_id=rule_id,
                      policy_version=policy_version, details=details, opened_at=now, last_surfaced_at=now)
    session.add(item)
    session.flush()
    return item, True


def on_compliance_hold(session: Session, lead_id: int) -> bool:
    """True while the lead waits for a compliance decision: its clocks stay paused."""
    return open_item_of(session, COMPLIANCE, lead_id) is not None


def items(session: Session, queue: str | None = None, *, include_resolved: bool = False) -> list[ReviewItem]:
    """Items oldest first, open ones only unless `include_resolved`."""
    query = select(ReviewItem)
    if queue is not None:
        query = query.where(ReviewItem.queue == queue)
    if not include_resolved:
        query = query.where(ReviewItem.resolved_at.is_(None))
    return list(session.scalars(query.order_by(ReviewItem.opened_at, ReviewItem.id)))


def close(item: ReviewItem, by: str, resolution: str, now: datetime) -> None:
    item.resolved_at, item.resolved_by, item.resolution = now, by[:100], resolution[:2000]


def resolve(session: Session, item_id: int, by: str, resolution: str, now: datetime) -> ReviewItem:
    """Close an ops-review item by hand, audited (`review_item_resolved`) with who and why.
    Compliance items close only through a clear or reject decision, which also moves the lead in
    the CRM."""
    from sidecar import audit  # imported here: audit -> store models only, but keep this module light
    from sidecar.engine.patterns.keys import review_resolved_key

    item = session.get(ReviewItem, item_id)
    if item is None:
        raise ReviewError(f"no review item #{item_id}; `sidecar queue list` shows the open ones")
    if item.resolved_at is not None:
        raise ReviewError(f"item #{item_id} was resolved already by {item.resolved_by} at "
                          f"{item.resolved_at:%Y-%m-%d %H:%M} UTC")
    if item.queue == COMPLIANCE:
        raise ReviewError(f"item #{item_id} is a compliance hold: decide it with `sidecar compliance clear` or "
                          "`sidecar compliance reject` (they move the lead in the CRM too)")
    if not resolution.strip():
        raise ReviewError("say what was done: --reason \"...\"")
    close(item, by, resolution, now)
    audit.record(session, at=now, kind="review_item_resolved", lead=session.get(Lead, item.lead_id), actor=by,
                 rule_id=item.rule_id, policy_version=item.policy_version, step_key=review_resolved_key(item.id),
                 details={"review_item_id": item.id, "queue": item.queue, "reason": item.reason,
                          "resolution": resolution, "time_in_review_s": round((now - item.opened_at).total_seconds())})
    return item


def as_json(item: ReviewItem, lead: Lead | None, now: datetime) -> dict[str, Any]:
    """One item for `queue list --json` and the admin API; `age_s` is wall time in review."""
    return {
        "id": item.id, "queue": item.queue, "reason": item.reason, "pattern": item.pattern,
        "rule_id": item.rule_id, "policy_version": item.policy_version,
        "lead": {"crm": lead.crm, "crm_id": lead.crm_id, "name": lead.name, "company": lead.company,
                 "state": lead.state, "owner_id": lead.owner_id} if lead is not None else None,
        "opened_at": item.opened_at.isoformat(), "age_s": int(((item.resolved_at or now) - item.opened_at)
                                                              .total_seconds()),
        "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
        "resolved_by": item.resolved_by, "resolution": item.resolution,
        "last_surfaced_at": item.last_surfaced_at.isoformat() if item.last_surfaced_at else None,
        "details": item.details,
    }
