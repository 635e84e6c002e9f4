"""Slack button clicks, after parsing: who may ack, snooze and revert, and what each one leaves behind."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.actions import ActionOutcome, handle_action
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.outbox import Ports, dispatch
from sidecar.ports import OwnerChange
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, OutboxRow, Rep
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

SLACK_IDS = {"r1": "U_R1", "r2": "U_R2", "r3": "U_R3"}  # the manager is linked by email in one test


def setup(sessions: sessionmaker[Session]) -> EngineContext:
    """Team 'us' (r1..r3 + us-mgr), lead 00Q1 owned by r1 since Tue 08:00 NY with a 1h window."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    with transaction(sessions) as session:
        for rep_id, slack_id in SLACK_IDS.items():
            rep = session.get(Rep, rep_id)
            assert rep is not None
            rep.slack_user_id = slack_id
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    return ctx


def click(sessions: sessionmaker[Session], ctx: EngineContext, action_id: str, key: str, user: str,
          at: datetime, email: str | None = None, crm_id: str = "00Q1") -> ActionOutcome:
    return handle_action(sessions, ctx, action_id=action_id, crm="salesforce", crm_id=crm_id,
                         idempotency_key=key, slack_user_id=user, slack_user_email=email, now=at.astimezone(UTC))


def notification_key(sessions: sessionmaker[Session], kind: str, persona: str) -> str:
    """The idempotency key of the notification a ladder step of `kind` sent to `persona`."""
    with transaction(sessions) as session:
        rows = session.execute(select(OutboxRow, AuditRow).join(AuditRow, AuditRow.id == OutboxRow.audit_id)
                               .where(OutboxRow.action == "notify", AuditRow.kind == kind)).all()
    keys = [row.idempotency_key for row, _ in rows if row.payload["persona"] == persona]
    assert len(keys) == 1, keys
    return keys[0]


def rows_of(sessions: sessionmaker[Session], kind: str) -> list[AuditRow]:
    with transaction(sessions) as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.kind == kind).order_by(AuditRow.id)))


def due_at(sessions: sessionmaker[Session]) -> datetime | None:
    with transaction(sessions) as session:
        return session.scalars(select(Clock).where(Clock.kind == "sla", Clock.status == "open")).one().next_due_at


def test_ack_by_the_owner_is_audited_once_even_when_clicked_twice(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    assert tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC)) == {"sla_breach_imminent": 1}
    key = notification_key(sessions, "sla_breach_imminent", "owner")
    first = click(sessions, ctx, "ack", key, "U_R1", ny(24, 8, 50))
    second = click(sessions, ctx, "ack", key, "U_R1", ny(24, 8, 51))
    assert first.ephemeral and "on Aisha Al-Mansoori" in first.text
    assert "already" in second.text
    [ack] = rows_of(sessions, "notification_acknowledged")
    imminent = rows_of(sessions, "sla_breach_imminent")[0]
    assert (ack.actor, ack.at, ack.details["idempotency_key"]) == ("r1", ny(24, 8, 50), key)
    assert (ack.rule_id, ack.details["step_audit_id"]) == ("sla.imminent", imminent.id)
    assert rows_of(sessions, "action_refused") == []
    assert due_at(sessions) == ny(24, 9)  # saying "on it" is not progress: the ladder is unchanged


def test_the_team_manager_found_by_email_may_ack_and_gets_linked(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))
    key = notification_key(sessions, "sla_breach_imminent", "owner")
    outcome = click(sessions, ctx, "ack", key, "U_MGR", ny(24, 8, 50), email=" MGR@us.example ")
    assert "noted" in outcome.text
    assert [row.actor for row in rows_of(sessions, "notification_acknowledged")] == ["us-mgr"]
    with transaction(sessions) as session:
        manager = session.get(Rep, "us-mgr")
        assert manager is not None and manager.slack_user_id == "U_MGR"
    # Linked now: the next click resolves by Slack id alone.
    assert "already" in click(sessions, ctx, "ack", key, "U_MGR", ny(24, 8, 52)).text


def test_ack_by_a_stranger_or_another_rep_is_refused_and_recorded(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))
    key = notification_key(sessions, "sla_breach_imminent", "owner")
    stranger = click(sessions, ctx, "ack", key, "U_NOBODY", ny(24, 8, 50), email="someone@else.example")
    colleague = click(sessions, ctx, "ack", key, "U_R2", ny(24, 8, 51))
    assert stranger.ephemeral and "not linked" in stranger.text
    assert colleague.ephemeral and "owner" in colleague.text
    assert rows_of(sessions, "notification_acknowledged") == []
    refused = rows_of(sessions, "action_refused")
    assert [(r.actor, r.details["reason"], r.details["rep_id"]) for r in refused] == [
        ("U_NOBODY", "unknown_user", None), ("U_R2", "not_owner", "r2")]
    assert all(r.details["idempotency_key"] == key and r.crm == "salesforce" for r in refused)


def test_a_click_about_an_unknown_lead_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    outcome = click(sessions, ctx, "ack", "k", "U_R1", ny(24, 8, 50), crm_id="00Q404")
    assert outcome.ephemeral and "00Q404" in outcome.text
    [refused] = rows_of(sessions, "action_refused")
    assert (refused.lead_id, refused.details["reason"]) == (None, "unknown_lead")


def test_snooze_moves_the_pending_step_15_minutes_later(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))
    assert due_at(sessions) == ny(24, 9)
    key = notification_key(sessions, "sla_breach_imminent", "owner")
    outcome = click(sessions, ctx, "snooze_15", key, "U_R1", ny(24, 8, 50))
    assert outcome.ephemeral and "Snoozed" in outcome.text
    assert due_at(sessions) == ny(24, 9, 15)
    [snoozed] = rows_of(sessions, "notification_snoozed")
    assert (snoozed.actor, snoozed.details["from_due_at"], snoozed.details["to_due_at"]) == (
        "r1", ny(24, 9).astimezone(UTC).isoformat(), ny(24, 9, 15).astimezone(UTC).isoformat())
    assert sum(tick(sessions, ctx, ny(24, 9).astimezone(UTC)).values()) == 0  # the old due time
    assert sum(tick(sessions, ctx, ny(24, 9, 14).astimezone(UTC)).values()) == 0
    assert tick(sessions, ctx, ny(24, 9, 15).astimezone(UTC)) == {"sla_breach": 1}
    assert [row.at for row in rows_of(sessions, "sla_breach")] == [ny(24, 9, 15)]
    assert due_at(sessions) == ny(24, 9, 30)  # only the snoozed step moved; the ladder is re-planned


def test_a_second_snooze_of_the_same_step_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))
    key = notification_key(sessions, "sla_breach_imminent", "owner")
    click(sessions, ctx, "snooze_15", key, "U_R1", ny(24, 8, 50))
    again = click(sessions, ctx, "snooze_15", key, "U_R1", ny(24, 8, 55))
    assert again.ephemeral and "already" in again.text
    assert due_at(sessions) == ny(24, 9, 15)
    assert len(rows_of(sessions, "notification_snoozed")) == 1
    assert [r.details["reason"] for r in rows_of(sessions, "action_refused")] == ["already_snoozed"]


def test_snooze_by_someone_other_than_the_owner_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))
    key = notification_key(sessions, "sla_breach_imminent", "owner")
    with transaction(sessions) as session:
        manager = session.get(Rep, "us-mgr")
        assert manager is not None
        manager.slack_user_id = "U_MGR"
    outcome = click(sessions, ctx, "snooze_15", key, "U_MGR", ny(24, 8, 50))
    assert outcome.ephemeral and due_at(sessions) == ny(24, 9)
    assert [r.details["reason"] for r in rows_of(sessions, "action_refused")] == ["not_owner"]


def test_snooze_on_a_breach_step_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    assert tick(sessions, ctx, ny(24, 9).astimezone(UTC)) == {"sla_breach_imminent": 1, "sla_breach": 1}
    key = notification_key(sessions, "sla_breach", "manager")
    outcome = click(sessions, ctx, "snooze_15", key, "U_R1", ny(24, 9, 1))
    assert outcome.ephemeral and "breach" in outcome.text
    assert due_at(sessions) == ny(24, 9, 30)
    assert rows_of(sessions, "notification_snoozed") == []
    assert [r.details["reason"] for r in rows_of(sessions, "action_refused")] == ["breach_step"]


def test_snooze_of_an_outdated_reminder_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    tick(sessions, ctx, ny(24, 9).astimezone(UTC))  # 80 % and 100 % both fired
    key = notification_key(sessions, "sla_breach_imminent", "owner")
    click(sessions, ctx, "snooze_15", key, "U_R1", ny(24, 9, 1))
    assert due_at(sessions) == ny(24, 9, 30)
    assert [r.details["reason"] for r in rows_of(sessions, "action_refused")] == ["stale_notification"]


def reassigned(sessions: sessionmaker[Session], ctx: EngineContext, writer: FakeWriter) -> tuple[Ports, str]:
    """Run the lead to its 150 % step (r1 -> r2), deliver the effects, and return the manager's key."""
    assert tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))["sla_breach_auto_reassign"] == 1
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    dispatch(sessions, ports, ny(24, 9, 30).astimezone(UTC))
    ingest(sessions, ctx, snapshot(at=ny(24, 9, 31), owner="r2"))  # the CRM now shows the new owner
    return ports, notification_key(sessions, "sla_breach_auto_reassign", "owner")


def test_revert_by_the_team_manager_gives_the_lead_back(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    writer = FakeWriter()
    ports, key = reassigned(sessions, ctx, writer)
    outcome = click(sessions, ctx, "revert_reassignment", key, "U_MGR", ny(24, 9, 40), email="mgr@us.example")
    assert not outcome.ephemeral and "Rep r1" in outcome.text
    dispatch(sessions, ports, ny(24, 9, 40).astimezone(UTC))
    changes = [e for k, e in writer.effects.items() if k.startswith("revert:") and isinstance(e, OwnerChange)]
    assert [(c.from_owner_id, c.to_owner_id) for c in changes] == [("r2", "r1")]
    [reassign] = rows_of(sessions, "sla_breach_auto_reassign")
    [revert] = rows_of(sessions, "reassignment_reverted")
    assert (revert.actor, revert.details["reverts_audit_id"]) == ("us-mgr", reassign.id)
    assert "U_MGR" in revert.details["reason"]
    again = click(sessions, ctx, "revert_reassignment", key, "U_MGR", ny(24, 9, 41))
    assert again.ephemeral and "already reverted" in again.text
    assert len(rows_of(sessions, "reassignment_reverted")) == 1


def test_revert_by_a_rep_is_refused(sessions: sessionmaker[Session]) -> None:
    ctx = setup(sessions)
    writer = FakeWriter()
    ports, key = reassigned(sessions, ctx, writer)
    for user in ("U_R2", "U_R1"):  # the new owner and the original owner, both plain reps
        outcome = click(sessions, ctx, "revert_reassignment", key, user, ny(24, 9, 40))
        assert outcome.ephemeral and "manager" in outcome.text
    assert rows_of(sessions, "reassignment_reverted") == []
    assert [r.details["reason"] for r in rows_of(sessions, "action_refused")] == ["not_manager"] * 2
    dispatch(sessions, ports, ny(24, 9, 40).astimezone(UTC))
    assert not [k for k in writer.effects if k.startswith("revert:")]
