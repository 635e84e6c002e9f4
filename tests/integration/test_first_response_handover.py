"""The first-response task follows its lead through reassignment and revert (no orphan task), and a
lead assigned at arrival gets its task for the assigned rep. Engine level, fake ports."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.revert import revert_reassignment
from sidecar.outbox import Ports, dispatch
from sidecar.ports import TaskUpdate
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow
from tests.integration.test_intent_tiers import arrive, run_minutes
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ny, policy_raw, snapshot


def test_the_task_follows_the_reassignment_and_comes_back_with_the_revert(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    writer = FakeWriter()
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    arrive(sessions, snapshot(at=ny(24, 8)), ctx)
    dispatch(sessions, ports, ny(24, 8).astimezone(UTC))
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 9, 30), writer)  # 150 %: reassigned
    dispatch(sessions, ports, ny(24, 9, 30).astimezone(UTC))
    with transaction(sessions) as session:
        reassigned = session.scalars(select(AuditRow).where(AuditRow.action == "reassign")).one()
        new_owner = reassigned.to_owner
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "was with a customer",
                            ny(24, 9, 40).astimezone(UTC))
    dispatch(sessions, ports, ny(24, 9, 40).astimezone(UTC))
    updates = [(u.task_key, u.new_owner_id, u.close) for u in writer.effects.values() if isinstance(u, TaskUpdate)]
    assert new_owner not in (None, "r1")
    assert updates == [("first-response:lead:1:task:r1", new_owner, False),
                       ("first-response:lead:1:task:r1", "r1", False)]  # there and back: never orphaned
