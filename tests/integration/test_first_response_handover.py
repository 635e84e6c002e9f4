"""The first-response task follows its lead through reassignment and revert (no orphan task), and a
lead assigned at arrival gets its task for the assigned rep. Engine level, fake ports."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.domain import ProgressActivity, ProgressKind
from sidecar.engine.assignment import assign_pending
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.revert import revert_reassignment
from sidecar.outbox import Ports, dispatch
from sidecar.ports import TaskRequest, TaskUpdate
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, LeadEvent
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


def open_tasks(writer: FakeWriter) -> dict[str, str]:
    """What the CRM would show: task key -> owner, for every task created and not closed since."""
    held: dict[str, str] = {}
    for key in writer.calls:
        effect = writer.effects[key]
        if isinstance(effect, TaskRequest):
            held.setdefault(key, effect.owner_id)
        elif isinstance(effect, TaskUpdate) and effect.task_key in held:
            if effect.close:
                del held[effect.task_key]
            elif effect.new_owner_id:
                held[effect.task_key] = effect.new_owner_id
    return held


def reassign_once(sessions: sessionmaker[Session], ctx: EngineContext, writer: FakeWriter) -> str:
    """Arrival at 08:00 (task for r1), the ladder's 150 % step at 09:30; returns the new owner."""
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    arrive(sessions, snapshot(at=ny(24, 8)), ctx)
    dispatch(sessions, ports, ny(24, 8).astimezone(UTC))
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 9, 30), writer)
    dispatch(sessions, ports, ny(24, 9, 30).astimezone(UTC))
    with transaction(sessions) as session:
        reassigned = session.scalars(select(AuditRow).where(AuditRow.action == "reassign")).one()
        return str(reassigned.to_owner)


def test_a_reassigned_lead_leaves_one_open_task_with_its_new_owner_and_after_a_revert(
        sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))  # on_reassign: reown
    add_team(sessions)
    writer = FakeWriter()
    new_owner = reassign_once(sessions, ctx, writer)
    # The first-response task moved to the new owner; no second "follow up" task next to it.
    assert open_tasks(writer) == {"first-response:lead:1:task:r1": new_owner}
    with transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "was with a customer",
                            ny(24, 9, 40).astimezone(UTC))
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), ny(24, 9, 40).astimezone(UTC))
    assert open_tasks(writer) == {"first-response:lead:1:task:r1": "r1"}


def test_on_reassign_close_gives_the_new_owner_one_follow_up_and_the_close_is_not_progress(
        sessions: sessionmaker[Session]) -> None:
    ctx = context()
    raw = policy_raw()
    raw["first_response"]["on_reassign"] = "close"
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    writer = FakeWriter()
    new_owner = reassign_once(sessions, ctx, writer)
    [(key, owner)] = open_tasks(writer).items()
    assert owner == new_owner and not key.startswith("first-response:")  # the reassignment's follow-up
    # The next poll reads the first-response task back as completed (the sidecar closed it): that is
    # not the new owner's first response, so their fresh clock keeps running.
    closed = ProgressActivity(crm_id="00T1", kind=ProgressKind.FIRST_RESPONSE_TASK_COMPLETED,
                              at=ny(24, 9, 31).astimezone(UTC), by="r1")
    arrive(sessions, snapshot(at=ny(24, 9, 32), owner=new_owner, activities=(closed,)), ctx)
    with transaction(sessions) as session:
        clock = session.scalars(select(Clock).where(Clock.kind == "sla").order_by(Clock.id.desc())).first()
        assert clock is not None and (clock.status, clock.close_reason) == ("open", None)
        lead = session.scalars(select(Lead)).one()
        assert lead.last_progress_at is None
        # Kept on the timeline as what it was, not as a "progress" event that reports count as a response.
        kinds = [e.kind for e in session.scalars(select(LeadEvent).where(LeadEvent.new == closed.kind.value))]
        assert kinds == ["task_closed_by_sidecar"]


def test_with_first_response_off_the_assignment_task_follows_the_reassigned_lead(
        sessions: sessionmaker[Session]) -> None:
    ctx = context()
    raw = policy_raw()
    raw["first_response"]["enabled"] = False
    raw["assignment"] = {"enabled": True, "rules": [{"id": "assign.all", "team": "us"}]}
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    writer = FakeWriter()
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    arrive(sessions, snapshot(at=ny(24, 8), owner=None), ctx)
    with transaction(sessions) as session:  # the assignment job: unowned, so assigned, with its task
        assert len(assign_pending(session, ctx, ny(24, 8).astimezone(UTC))) == 1
    dispatch(sessions, ports, ny(24, 8).astimezone(UTC))
    [(assign_key, first_owner)] = open_tasks(writer).items()
    run_minutes(sessions, ctx, ny(24, 8), ny(24, 9, 30), writer)
    dispatch(sessions, ports, ny(24, 9, 30).astimezone(UTC))
    with transaction(sessions) as session:
        reassigned = session.scalars(select(AuditRow).where(AuditRow.action == "reassign")).one()
    assert reassigned.details["from_owner"] == first_owner
    assert open_tasks(writer) == {assign_key: reassigned.to_owner}
