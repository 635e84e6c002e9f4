"""The event-driven patterns run compliance first: a lead it holds gets nothing else (no high-value
flag, no churn tag, no first-response task) until compliance clears it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.patterns.registry import _EVENT_HANDLERS
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow
from tests.pattern_support import feed
from tests.support import add_team, apply_policy, context, ny, policy_raw, snapshot


def test_the_handlers_run_in_the_documented_order() -> None:
    assert list(_EVENT_HANDLERS) == ["compliance", "high_value", "churn", "first_response"]


def kinds(sessions: sessionmaker[Session]) -> list[str]:
    with transaction(sessions) as session:
        return list(session.scalars(select(AuditRow.kind).where(AuditRow.lead_id.is_not(None)).order_by(AuditRow.id)))


def test_a_lead_held_for_compliance_is_neither_flagged_nor_tagged_nor_tasked(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    # High value (score 95 >= 85), a churn flag and a sanctions match, all at arrival.
    feed(sessions, ctx, snapshot("00QHELD", at=ny(24, 8), score=95.0,
                                 flags=frozenset({"sanctions_match", "usage_drop"})))
    assert kinds(sessions) == ["compliance_hold"]
    # The same lead without the sanctions match is a control: each of the three patterns acts.
    feed(sessions, ctx, snapshot("00QFREE", at=ny(24, 8), score=95.0, flags=frozenset({"usage_drop"})))
    assert set(kinds(sessions)) == {"compliance_hold", "high_value_flag", "churn_risk", "first_response_task"}
