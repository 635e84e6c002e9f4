"""A task that changes hands is due at its new owner's deadline (the breach instant of the clock the
hand-over started), not at the old owner's, already past; and with `on_reassign: close` a revert
leaves the original owner with an open task to work the lead again. Engine level, fake ports."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine import clocks
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.revert import revert_reassignment
from sidecar.outbox import Ports, dispatch
from sidecar.ports import TaskRequest, TaskUpdate
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock
from tests.integration.test_first_response_handover import open_tasks, reassign_once
from tests.integration.test_intent_tiers import arrive, run_minutes
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ny, policy_raw, snapshot

FIRST_TASK = "first-response:lead:1:task:r1"


def running_breach(sessions: sessionmaker[Session], ctx: EngineContext) -> datetime:
    """The breach instant of the lead's running SLA clock, as the engine computes it."""
    with transaction(sessions) as session:
        clock = session.scalars(select(Clock).where(Clock.kind == "sla", Clock.status == "open")).one()
        return clocks.breach_at(clock, ctx.book, session)


def revert(sessions: sessionmaker[Session], ctx: EngineContext, writer: FakeWriter) -> None:
    with transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "was with a customer",
                            ny(24, 9, 40).astimezone(UTC))
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), ny(24, 9, 40).astimezone(UTC))


def close_mode(sessions: sessionmaker[Session]) -> EngineContext:
    """The test policy with `first_response.on_reassign: close`, and the team."""
    raw = policy_raw()
    raw["first_response"]["on_reassign"] = "close"
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions)
    return context()


def test_a_re_owned_task_is_due_at_the_new_owners_deadline_there_and_back(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))  # on_reassign: reown; 1 h window, New York hours
    add_team(sessions)
    writer = FakeWriter()
    new_owner = reassign_once(sessions, ctx, writer)  # arrival 08:00 (due 09:00), reassigned at 09:30
    created = writer.effects[FIRST_TASK]
    assert isinstance(created, TaskRequest) and created.due_at == ny(24, 9)  # overdue by the reassignment
    [moved] = [u for u in writer.effects.values() if isinstance(u, TaskUpdate)]
    # The new owner's fresh window: 09:30 + 1 business hour, and the market's zone for the due date.
    assert (moved.new_owner_id, moved.due_at, moved.due_tz) == (new_owner, ny(24, 10, 30), "America/New_York")
    assert moved.due_at == running_breach(sessions, ctx)
    revert(sessions, ctx, writer)
    back = [u for u in writer.effects.values() if isinstance(u, TaskUpdate)][-1]
    assert (back.new_owner_id, back.due_at) == ("r1", ny(24, 10, 40))  # the revert's fresh window
    assert back.due_at == running_breach(sessions, ctx)


def test_with_on_reassign_close_a_revert_leaves_the_original_owner_an_open_task(
        sessions: sessionmaker[Session]) -> None:
    ctx = close_mode(sessions)
    writer = FakeWriter()
    new_owner = reassign_once(sessions, ctx, writer)
    [(follow_up, owner)] = open_tasks(writer).items()
    assert owner == new_owner
    # Due an hour after the reassignment (09:30), dated in the market's zone like every sidecar task:
    # in UTC a late-afternoon task would land on tomorrow's date in the CRM.
    created = writer.effects[follow_up]
    assert isinstance(created, TaskRequest)
    assert (created.due_at, created.due_tz) == (ny(24, 10, 30), "America/New_York")
    revert(sessions, ctx, writer)
    # The reassignee's follow-up is closed (close mode moves nothing); the lead is r1's again, with a task.
    [(key, holder)] = open_tasks(writer).items()
    assert key != follow_up and holder == "r1"
    task = writer.effects[key]
    assert isinstance(task, TaskRequest) and task.subject.startswith("Back to you:")
    assert (task.due_at, task.due_tz) == (ny(24, 10, 40), "America/New_York")
    assert task.due_at == running_breach(sessions, ctx)
    # That task is the lead's one task from now on: a second reassignment closes it like any other.
    run_minutes(sessions, ctx, ny(24, 9, 41), ny(24, 11, 10), writer)  # the fresh window's 150 %
    with transaction(sessions) as session:
        again = session.scalars(select(AuditRow).where(AuditRow.action == "reassign").order_by(AuditRow.id)).all()
    assert len(again) == 2
    [(last_key, last_holder)] = open_tasks(writer).items()
    assert last_key != key and last_holder == again[-1].to_owner


def test_with_on_reassign_close_reverting_a_move_never_made_keeps_the_original_owners_task_open(
        sessions: sessionmaker[Session]) -> None:
    ctx = close_mode(sessions)
    arrive(sessions, snapshot(at=ny(24, 8)), ctx)  # r1's first-response task, not yet written
    tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))  # 150 %: reassigned, nothing dispatched yet
    with transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "too fast", ny(24, 9, 31).astimezone(UTC))
    writer = FakeWriter()
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), ny(24, 9, 32).astimezone(UTC))
    # The lead never left r1 in the CRM: r1's own task stays open (close mode closes a task that
    # changes hands, and this one never did), and no second task is added next to it.
    assert open_tasks(writer) == {FIRST_TASK: "r1"}
    assert not [u for u in writer.effects.values() if isinstance(u, TaskUpdate)]
