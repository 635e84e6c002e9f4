"""Noise control: simultaneous warnings digest, a per-recipient limit holds the rest, breaches never wait,
quiet hours hold warnings until the recipient's next business hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.evaluator import tick
from sidecar.outbox import Ports, dispatch
from sidecar.policy.model import NoiseControl
from sidecar.store.db import transaction
from sidecar.store.models import OutboxRow
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ingest, ny, policy_raw, snapshot


def setup(sessions: sessionmaker[Session], arrivals: list[int], **policy: object) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(**policy), ny(1, 0))
    add_team(sessions)
    for i, minute in enumerate(arrivals):
        ingest(sessions, ctx, snapshot(f"00Q{i}", at=ny(24, 8, minute)))


def run(sessions: sessionmaker[Session], ports: Ports, start: datetime, end: datetime) -> None:
    ctx = context()
    at = start
    while at <= end:
        tick(sessions, ctx, at.astimezone(UTC))
        dispatch(sessions, ports, at.astimezone(UTC))
        at += timedelta(minutes=1)


def test_warnings_due_together_go_out_as_one_digest(sessions: sessionmaker[Session]) -> None:
    setup(sessions, [0, 0, 0])
    notifier = FakeNotifier()
    run(sessions, Ports(notifier, {"salesforce": FakeWriter()}), ny(24, 8, 48), ny(24, 8, 48))
    assert notifier.sent == {}
    [(key, digest)] = notifier.digests.items()
    assert key.startswith("digest:") and sorted(n.lead.crm_id for n in digest) == ["00Q0", "00Q1", "00Q2"]
    with transaction(sessions) as session:
        rows = session.scalars(select(OutboxRow).where(OutboxRow.action == "notify")).all()
    assert {(r.status, r.result) for r in rows} == {("done", "digest:C1:digest1")}


def test_limit_per_recipient_holds_warnings_then_digests_them_breaches_never_wait(
        sessions: sessionmaker[Session]) -> None:
    setup(sessions, [0, 1, 2, 3], noise={"max_per_recipient": 2, "window_minutes": 15})
    notifier = FakeNotifier()
    ports = Ports(notifier, {"salesforce": FakeWriter()}, NoiseControl(max_per_recipient=2, window_minutes=15))
    run(sessions, ports, ny(24, 8, 48), ny(24, 9, 2))
    assert sorted(n.lead.crm_id for n in notifier.sent.values() if n.persona.value == "owner") == ["00Q0", "00Q1"]
    # the breaches (09:00, 09:01, 09:02) went to the manager's channel at once, whatever the warnings did
    assert sorted(n.lead.crm_id for n in notifier.sent.values() if n.kind == "sla_breach") == [
        "00Q0", "00Q1", "00Q2"]
    assert notifier.digests == {}
    with transaction(sessions) as session:
        held = session.scalars(select(OutboxRow).where(OutboxRow.status == "pending",
                                                      OutboxRow.action == "notify")).all()
    assert {(r.payload["lead"]["crm_id"], r.next_attempt_at) for r in held} == {
        ("00Q2", ny(24, 9, 3)), ("00Q3", ny(24, 9, 3))}  # the window frees 15 min after the first warning
    assert all(r.last_error.startswith("held: warning limit") and r.attempts == 0 for r in held)
    run(sessions, ports, ny(24, 9, 3), ny(24, 9, 3))
    [digest] = notifier.digests.values()
    assert sorted(n.lead.crm_id for n in digest) == ["00Q2", "00Q3"]


def test_quiet_hours_hold_a_warning_until_the_recipients_business_hours(sessions: sessionmaker[Session]) -> None:
    raw = policy_raw()
    raw["notifications"]["owner"] = {"via": "slack_dm", "quiet_hours": True}
    ctx = context()
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions, market="IN")  # the team sits in India; the lead's clock runs on New York hours
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))
    with transaction(sessions) as session:
        warning = session.scalars(select(OutboxRow).where(OutboxRow.action == "notify")).one()
    # 08:48 in New York is 19:18 in Kolkata: the DM waits for 09:30 IST the next morning
    assert warning.next_attempt_at == datetime(2026, 11, 25, 9, 30, tzinfo=ZoneInfo("Asia/Kolkata"))


def test_without_digests_the_limit_still_holds(sessions: sessionmaker[Session]) -> None:
    setup(sessions, [0, 0, 0, 0])
    notifier = FakeNotifier()
    ports = Ports(notifier, {"salesforce": FakeWriter()}, NoiseControl(max_per_recipient=2, digest=False))
    run(sessions, ports, ny(24, 8, 48), ny(24, 8, 48))
    assert len(notifier.sent) == 2 and notifier.digests == {}
    with transaction(sessions) as session:
        held = session.scalars(select(OutboxRow).where(OutboxRow.status == "pending")).all()
    assert len(held) == 2 and {r.next_attempt_at for r in held} == {ny(24, 9, 3)}


def test_the_dispatch_job_uses_the_policys_noise_settings(sessions: sessionmaker[Session]) -> None:
    from sidecar import jobs
    from sidecar.jobs import Runtime

    setup(sessions, [0, 0, 0], noise={"max_per_recipient": 1, "window_minutes": 30, "digest": False})
    notifier = FakeNotifier()
    rt = Runtime(sessions, context(), {}, Ports(notifier, {"salesforce": FakeWriter()}))
    jobs.evaluate(rt, ny(24, 8, 48).astimezone(UTC))
    jobs.dispatch(rt, ny(24, 8, 48).astimezone(UTC))
    assert len(notifier.sent) == 1 and rt.ports.noise.window_minutes == 30
