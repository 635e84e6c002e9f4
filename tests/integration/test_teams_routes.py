"""A team on Microsoft Teams next to a team on Slack: the engine routes by the team's chat, the
dispatcher delivers through the Teams Workflows emulator, retries a 429 after Retry-After on the
injected clock, and dead-letters a 400 with what to fix. Noise limits and quiet hours apply alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.teams import TeamsWorkflowsEmulator
from connectors.teams.notifier import CHAT_URL_ENV, TeamsNotifier
from sidecar.engine.evaluator import tick
from sidecar.notify_routes import RoutedNotifier
from sidecar.outbox import Ports, RetryPolicy, dispatch
from sidecar.policy.model import NoiseControl
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, OutboxRow, Team
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ingest, ny, policy_raw, snapshot

CHANNEL_ENV = "SIDECAR_TEAMS_WORKFLOW_DACH"
SLACK_ROUTES, TEAMS_ROUTES = ("slack_dm", "team_channel", "channel"), ("teams_chat", "teams_channel")


@pytest.fixture
def teams() -> Iterator[TeamsWorkflowsEmulator]:
    emu = TeamsWorkflowsEmulator(clock=lambda: datetime(2026, 11, 24, tzinfo=UTC))
    emu.start()
    yield emu
    emu.stop()


def two_teams(sessions: sessionmaker[Session], **policy: object) -> None:
    """Team `de` on Teams (leads 00QD…), team `us` on Slack (leads 00QU…), both past 150 % of the window."""
    ctx = context()
    apply_policy(sessions, policy_raw(**policy), ny(1, 0))
    add_team(sessions, "us", reps=("u1", "u2"))
    add_team(sessions, "de", reps=("d1", "d2"))
    with transaction(sessions) as session:
        team = session.get(Team, "de")
        assert team is not None
        team.chat, team.teams_workflow_env = "teams", CHANNEL_ENV
    ingest(sessions, ctx, snapshot("00QU1", at=ny(24, 8), owner="u1"))
    ingest(sessions, ctx, snapshot("00QD1", at=ny(24, 8), owner="d1"))
    tick(sessions, ctx, ny(24, 9, 45).astimezone(UTC))


def ports(teams: TeamsWorkflowsEmulator, slack: FakeNotifier, urls: dict[str, str] | None = None,
          noise: NoiseControl | None = None) -> Ports:
    urls = urls if urls is not None else {CHAT_URL_ENV: teams.add_workflow("chat", kind="chat"),
                                          CHANNEL_ENV: teams.add_workflow("DE channel", channel="de")}
    teams_notifier = TeamsNotifier(urls.get, allow_http=True)
    routed = RoutedNotifier({**dict.fromkeys(SLACK_ROUTES, slack), **dict.fromkeys(TEAMS_ROUTES, teams_notifier)})
    return Ports(routed, {"salesforce": FakeWriter()}, noise or NoiseControl())


def notify_rows(sessions: sessionmaker[Session]) -> list[OutboxRow]:
    with transaction(sessions) as session:
        rows = list(session.scalars(select(OutboxRow).where(OutboxRow.action == "notify").order_by(OutboxRow.id)))
        session.expunge_all()
        return rows


def test_the_team_on_teams_hears_in_teams_and_the_other_in_slack_one_card_per_notification(
        sessions: sessionmaker[Session], teams: TeamsWorkflowsEmulator) -> None:
    two_teams(sessions)
    slack = FakeNotifier()
    outcome = dispatch(sessions, ports(teams, slack), ny(24, 9, 46).astimezone(UTC))
    assert outcome.get("dead", 0) == 0
    rows = notify_rows(sessions)
    de = [row for row in rows if row.payload["lead"]["crm_id"] == "00QD1"]
    us = [row for row in rows if row.payload["lead"]["crm_id"] == "00QU1"]
    assert {row.payload["via"] for row in de} == {"teams_chat", "teams_channel"}
    assert {row.payload["via"] for row in us} <= set(SLACK_ROUTES)
    # The outbox stores the variable's name, never the signed URL.
    assert {row.payload["channel"] for row in de if row.payload["via"] == "teams_channel"} == {CHANNEL_ENV}
    assert not any("sig=" in json.dumps(row.payload) or "/workflows/" in json.dumps(row.payload) for row in de)
    cards = teams.cards()
    assert sorted(card["key"] for card in cards) == sorted(row.idempotency_key for row in de)
    assert sorted(slack.sent) == sorted(row.idempotency_key for row in us)
    by_key = {card["key"]: card for card in cards}
    for row in de:
        card = by_key[row.idempotency_key]
        text = str(card["card"])
        assert row.payload["lead"]["name"] in text and row.payload["lead"]["company"] in text
        assert card["card"]["actions"][0]["url"] == row.payload["lead"]["record_url"]
        if row.payload["via"] == "teams_chat":
            assert card["kind"] == "chat" and card["recipient"] == row.payload["recipient_email"]
        else:
            assert card["kind"] == "channel" and card["channel"] == "de"
    with transaction(sessions) as session:
        audit_kinds = {row.id: row.kind for row in session.scalars(select(AuditRow))}
    # one card per warning to the owner and per breach to the manager, as the audit says
    assert sum(audit_kinds[row.audit_id] == "sla_breach_imminent" for row in de) == 1
    assert sum(audit_kinds[row.audit_id] == "sla_breach" and row.payload["persona"] == "manager" for row in de) == 1


def test_a_429_is_retried_after_retry_after_on_the_injected_clock(sessions: sessionmaker[Session],
                                                                  teams: TeamsWorkflowsEmulator) -> None:
    two_teams(sessions)
    wired = ports(teams, FakeNotifier())
    teams.throttle_next(1, retry_after=42)
    now = ny(24, 9, 46).astimezone(UTC)
    dispatch(sessions, wired, now, retry=RetryPolicy(base=timedelta(hours=1)))
    (waiting,) = [row for row in notify_rows(sessions) if row.status == "pending"]
    assert waiting.next_attempt_at == now + timedelta(seconds=42) and "throttled" in (waiting.last_error or "")
    assert waiting.idempotency_key not in {card["key"] for card in teams.cards()}
    assert dispatch(sessions, wired, now + timedelta(seconds=41)) == {}  # not yet: no real sleep, no early retry
    assert dispatch(sessions, wired, now + timedelta(seconds=42)) == {"done": 1}
    assert [card["key"] for card in teams.cards()].count(waiting.idempotency_key) == 1


def test_a_400_is_a_dead_letter_that_says_what_to_fix(sessions: sessionmaker[Session],
                                                      teams: TeamsWorkflowsEmulator) -> None:
    two_teams(sessions)
    chat = teams.add_workflow("chat", kind="chat")
    # The admin pasted the chat workflow's URL into the team channel's variable: it needs a recipient.
    dispatch(sessions, ports(teams, FakeNotifier(), {CHAT_URL_ENV: chat, CHANNEL_ENV: chat}),
             ny(24, 9, 46).astimezone(UTC))
    dead = [row for row in notify_rows(sessions) if row.status == "dead"]
    assert dead and {row.payload["via"] for row in dead} == {"teams_channel"}
    for row in dead:
        assert "HTTP 400" in (row.last_error or "") and CHANNEL_ENV in (row.last_error or "")
        assert "When a Teams webhook request is received" in (row.last_error or "")
        assert "sig=" not in (row.last_error or "")
    with transaction(sessions) as session:
        assert sum(row.kind == "effect_failed" for row in session.scalars(select(AuditRow))) == len(dead)


def test_noise_limits_hold_warnings_to_a_teams_recipient_like_a_slack_one(sessions: sessionmaker[Session],
                                                                          teams: TeamsWorkflowsEmulator) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions, "de", reps=("d1",))
    with transaction(sessions) as session:
        team = session.get(Team, "de")
        assert team is not None
        team.chat, team.teams_workflow_env = "teams", CHANNEL_ENV
    for i in range(4):  # four leads of one owner reach the warning at the same tick
        ingest(sessions, ctx, snapshot(f"00QD{i}", at=ny(24, 8), owner="d1"))
    tick(sessions, ctx, ny(24, 8, 49).astimezone(UTC))
    wired = ports(teams, FakeNotifier(), noise=NoiseControl(max_per_recipient=1, window_minutes=15, digest=False))
    outcome = dispatch(sessions, wired, ny(24, 8, 50).astimezone(UTC))
    assert outcome == {"done": 1, "held": 3}
    assert [card["kind"] for card in teams.cards()] == ["chat"]
    # with digests on, the held ones go out as one card once the window frees up
    wired.noise = NoiseControl(max_per_recipient=1, window_minutes=15, digest=True)
    assert dispatch(sessions, wired, ny(24, 9, 5).astimezone(UTC)) == {"done": 3}
    assert len(teams.cards()) == 2 and teams.cards()[1]["key"].startswith("digest:")


def test_quiet_hours_hold_a_warning_to_a_teams_chat_until_business_hours(sessions: sessionmaker[Session],
                                                                        teams: TeamsWorkflowsEmulator) -> None:
    raw = policy_raw()
    raw["notifications"]["owner"] = {"via": "slack_dm", "quiet_hours": True}
    ctx = context()
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions, "de", market="IN", reps=("d1",))  # an India team, on Teams this time
    with transaction(sessions) as session:
        team = session.get(Team, "de")
        assert team is not None
        team.chat, team.teams_workflow_env = "teams", CHANNEL_ENV
    ingest(sessions, ctx, snapshot("00QD1", at=ny(24, 8), owner="d1"))
    tick(sessions, ctx, ny(24, 8, 48).astimezone(UTC))
    (warning,) = notify_rows(sessions)
    # 08:48 in New York is 19:18 in Kolkata: the chat waits for 09:30 IST the next morning
    assert warning.payload["via"] == "teams_chat"
    assert warning.next_attempt_at == datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    wired = ports(teams, FakeNotifier())
    assert dispatch(sessions, wired, ny(24, 8, 50).astimezone(UTC)) == {}
    assert dispatch(sessions, wired, datetime(2026, 11, 25, 4, 0, tzinfo=UTC)) == {"done": 1}
    assert [card["recipient"] for card in teams.cards()] == ["d1@example.com"]
