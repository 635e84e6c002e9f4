from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.evaluator import tick
from sidecar.engine.revert import RevertError, revert_reassignment
from sidecar.outbox import Ports, dispatch
from sidecar.ports import OwnerChange, TaskUpdate
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead
from tests.support import (
    FakeNotifier,
    FakeWriter,
    add_team,
    apply_policy,
    context,
    ingest,
    ny,
    policy_raw,
    snapshot,
)


def test_revert_restores_the_owner_links_both_rows_and_starts_a_fresh_clock(
        sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))
    writer = FakeWriter()
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    dispatch(sessions, ports, ny(24, 9, 30).astimezone(UTC))
    ingest(sessions, ctx, snapshot(at=ny(24, 9, 31), owner="r2"))  # the CRM now shows the new owner
    with transaction(sessions) as session:
        row = revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "rep was in a demo call",
                                  ny(24, 9, 40).astimezone(UTC))
        revert_id = row.id
    dispatch(sessions, ports, ny(24, 9, 40).astimezone(UTC))
    changes = [e for k, e in writer.effects.items() if k.startswith("revert:") and isinstance(e, OwnerChange)]
    assert [(c.from_owner_id, c.to_owner_id) for c in changes] == [("r2", "r1")]
    # The follow-up task r2 got with the lead comes back with it: no task left with r2.
    moves = [e for k, e in writer.effects.items() if k.startswith("revert:") and isinstance(e, TaskUpdate)]
    assert [(m.task_key, m.new_owner_id, m.close) for m in moves] == [("clock:1:step:2:task:r2", "r1", False)]
    with transaction(sessions) as session:
        reassigned = session.scalars(select(AuditRow).where(AuditRow.kind == "sla_breach_auto_reassign")).one()
        reverted = session.get(AuditRow, revert_id)
        assert reverted is not None
        assert reverted.details["reverts_audit_id"] == reassigned.id
        assert (reverted.actor, reverted.details["reason"]) == ("us-mgr", "rep was in a demo call")
        running = session.scalars(select(Clock).where(Clock.kind == "sla", Clock.status == "open")).one()
        assert running.started_at == ny(24, 9, 40) and running.steps_fired == 0
    # no instant re-escalation: nothing fires until 80 % of the fresh window
    # (the stuck-lead clock fires at 10:00: 2x the 1 h window in NEW since 08:00; owner changes do not reset it)
    assert tick(sessions, ctx, ny(24, 10, 27).astimezone(UTC)) == {"stuck_lead": 1}
    assert tick(sessions, ctx, ny(24, 10, 28).astimezone(UTC)) == {"sla_breach_imminent": 1}
    with pytest.raises(RevertError, match="already reverted"), transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "again", ny(24, 11).astimezone(UTC))


def test_revert_without_a_reassignment_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    with pytest.raises(RevertError, match="never reassigned"), transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "", ny(24, 9).astimezone(UTC))


def breached(sessions: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))
    return ctx


def test_a_reassignment_the_crm_refused_cannot_be_reverted(sessions: sessionmaker[Session]) -> None:
    ctx = breached(sessions)
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": FakeWriter(conflict_owner_changes=True)}),
             ny(24, 9, 30).astimezone(UTC))
    with pytest.raises(RevertError, match="never happened"), transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "", ny(24, 9, 40).astimezone(UTC))


def test_reverting_before_the_owner_change_was_written_cancels_it(sessions: sessionmaker[Session]) -> None:
    ctx = breached(sessions)
    with transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "too fast", ny(24, 9, 31).astimezone(UTC))
    writer, notifier = FakeWriter(), FakeNotifier()
    dispatch(sessions, Ports(notifier, {"salesforce": writer}), ny(24, 9, 32).astimezone(UTC))
    # nothing moved: the one task written is the original owner's first-response task from arrival
    # (its re-owning to the new owner depended on the cancelled owner change, so it was skipped too)
    moved = [key for key in writer.calls if key.endswith(":owner") or ":task" in key]
    assert moved == ["first-response:lead:1:task:r1"]
    assert "new_owner" not in {n.persona.value for n in notifier.sent.values()}
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead)).one()
        assert lead.owner_id == "r1"


def test_revert_after_a_human_moved_the_lead_again_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = breached(sessions)
    dispatch(sessions, Ports(FakeNotifier(), {"salesforce": FakeWriter()}), ny(24, 9, 30).astimezone(UTC))
    ingest(sessions, ctx, snapshot(at=ny(24, 9, 35), owner="r3"))  # a person gave it to r3 meanwhile
    with pytest.raises(RevertError, match="now owned by r3"), transaction(sessions) as session:
        revert_reassignment(session, ctx, "salesforce", "00Q1", "us-mgr", "", ny(24, 9, 40).astimezone(UTC))
