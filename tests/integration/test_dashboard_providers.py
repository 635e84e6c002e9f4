"""The dashboard's queue and outcome sections read the review queue and the computed outcome rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import outcomes, review_queue
from sidecar.store.db import transaction
from sidecar.store.models import Lead, ReviewItem
from sidecar.web.dashboard import providers
from tests.pattern_support import feed
from tests.support import add_team, apply_policy, context, ny, policy_raw, snapshot

CONTACTED = "Working - Contacted"


def test_open_review_items_and_computed_outcomes_are_listed(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    first, second = snapshot("00QA", at=ny(24, 8)), snapshot("00QB", at=ny(24, 8))
    feed(sessions, ctx, first)
    feed(sessions, ctx, second)
    feed(sessions, ctx, replace(first, crm_modified_at=ny(24, 8, 30), crm_status=CONTACTED,
                                status_changed_at=ny(24, 8, 30)))
    now = ny(24, 9).astimezone(UTC)
    with transaction(sessions) as session:
        views = providers.queues(session, now)
        assert [(view.name, view.items) for view in views] == [("ops review", []), ("compliance", []),
                                                               ("unknown CRM values", [])]
        assert providers.outcomes(session, now) == []  # nothing computed yet
        lead_b = session.scalars(select(Lead).where(Lead.crm_id == "00QB")).one()
        item, _created = review_queue.open_item(
            session, queue=review_queue.COMPLIANCE, lead=lead_b, reason="sanctions_match", pattern="compliance",
            rule_id="compliance.hold", policy_version=None, details={}, now=ny(24, 8, 45).astimezone(UTC))
        outcomes.refresh(session, ctx.book, now)
    with transaction(sessions) as session:
        ops, compliance, _unknown = providers.queues(session, now)
        assert ops.items == []
        assert [(i.crm_id, i.reason, i.since) for i in compliance.items] == [
            ("00QB", "sanctions_match", ny(24, 8, 45).astimezone(UTC))]
        rows = providers.outcomes(session, now)
        # A reached CONTACTED at 08:30 (its first response); B's 1 h window ran out at 09:00 unanswered.
        assert [(row.crm_id, row.outcome) for row in rows] == [("00QA", "contacted"), ("00QB", "no_response")]
        assert rows[0].at == ny(24, 8, 30).astimezone(UTC)
        review_queue.close(session.get(ReviewItem, item.id), "compliance-officer", "cleared", now)
    with transaction(sessions) as session:
        assert providers.queues(session, now)[1].items == []
