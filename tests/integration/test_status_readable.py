"""`sidecar status` people can read: overdue apart from due, names instead of ids, rule and time left,
the last poll's result and error per CRM (kept in the store, since status runs in another process);
audit exports carry lead, owner and team names beside the ids."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from sidecar import audit, cli, jobs
from sidecar.domain import Crm, LeadSnapshot
from sidecar.engine.evaluator import tick
from sidecar.jobs import Runtime
from sidecar.outbox import Ports
from sidecar.ports import ChangePage, Cursor, DirectoryUser
from sidecar.status import gather
from sidecar.store.db import transaction
from tests.support import add_team, apply_policy, context, ingest, ny, policy_raw, snapshot


def two_leads(sessions: sessionmaker[Session]) -> None:
    """A arrives 08:00 (1 h window: breached 09:00), B at 09:00 owned by r2 (80 % due 09:48)."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8)))
    ingest(sessions, ctx, snapshot("00QB", at=ny(24, 9), name="Jonas Becker", owner="r2"))
    tick(sessions, ctx, ny(24, 9, 0).astimezone(UTC))


def test_overdue_and_due_soon_leads_by_name_with_rule_and_time_left(sessions: sessionmaker[Session]) -> None:
    two_leads(sessions)
    with transaction(sessions) as session:
        report = gather(session, ny(24, 9, 10).astimezone(UTC))
    assert [(x.name, x.owner, x.team, x.rule_id, x.left) for x in report.overdue] == [
        ("Aisha Al-Mansoori", "Rep r1", "Team us", "sla.breach", -timedelta(minutes=10))]
    assert [(x.name, x.owner, x.team, x.rule_id, x.left) for x in report.due] == [
        ("Jonas Becker", "Rep r2", "Team us", "sla.imminent", timedelta(minutes=38))]
    with transaction(sessions) as session:  # before B's hour starts counting down, nothing is due
        assert gather(session, ny(24, 8, 30).astimezone(UTC)).due == []


def test_status_command_prints_both_lists_and_each_crm_poll(sessions: sessionmaker[Session],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    two_leads(sessions)
    jobs._remember_poll(Runtime(sessions, context(), {}, Ports(None, {})), "salesforce", ny(24, 9, 5).astimezone(UTC),
                        "cannot reach acme.my.salesforce.com (connection refused)", ny(24, 9, 1).astimezone(UTC))
    monkeypatch.setattr(cli, "sessions", lambda: sessions)
    monkeypatch.setattr(cli, "now", lambda: ny(24, 9, 10).astimezone(UTC))
    result = CliRunner().invoke(cli.app, ["status"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "2 running, 0 paused; 1 leads overdue, 1 due within the hour" in text
    overdue, due = text.index("overdue (breached, nobody has acted yet):"), text.index("due within the hour:\n")
    assert overdue < text.index("Aisha Al-Mansoori") < due < text.index("Jonas Becker")
    assert "10 min" in text[overdue:due] and "38 min" in text[due:]
    assert ("last poll: salesforce: FAILING since 2026-11-24 14:01 UTC: cannot reach acme.my.salesforce.com "
            "(connection refused); no successful poll yet") in text


def test_status_command_names_each_unknown_crm_value_once_and_the_backlog_age(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    two_leads(sessions)
    ctx = context()
    for crm_id in ("00QX1", "00QX2", "00QX3"):  # three leads, one unknown market: one line
        ingest(sessions, ctx, snapshot(crm_id, at=ny(24, 9), market="Atlantis"))
    ingest(sessions, ctx, snapshot("00QX4", at=ny(24, 9), status="Nurture - Someday", owner="00GQUEUE0000001"))
    monkeypatch.setattr(cli, "sessions", lambda: sessions)
    monkeypatch.setattr(cli, "now", lambda: ny(24, 9, 10).astimezone(UTC))
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli.app, ["status"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "CRM values the policy or directory does not know" in text
    rows = [line for line in text.splitlines() if "Atlantis" in line]
    assert len(rows) == 1 and " 3 " in rows[0] and "default market" in rows[0], rows
    assert any("Nurture - Someday" in line and "UNMAPPED" in line for line in text.splitlines()), text
    assert any("00GQUEUE0000001" in line and "owner" in line for line in text.splitlines()), text
    assert "pending (oldest waiting 10 min)" in text  # A's breach effects, decided at 09:00


class Flaky:
    """A reader whose CRM is down until `up` is set."""

    crm = Crm.HUBSPOT

    def __init__(self) -> None:
        self.up = False

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        if not self.up:
            raise ConnectionRefusedError("connection refused")
        return iter(())

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        return []

    def read_users(self) -> list[DirectoryUser]:
        return []

    def record_url(self, crm_id: str) -> str:
        return crm_id


def test_a_failing_poll_is_stored_and_cleared_by_the_next_good_one(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    reader = Flaky()
    rt = Runtime(sessions, context(), {"hubspot": reader}, Ports(None, {}))
    first = datetime(2026, 11, 24, 14, tzinfo=UTC)
    jobs.poll_all(rt, first)
    with transaction(sessions) as session:
        (poll,) = gather(session, first).polls
    assert (poll.crm, poll.last_ok, poll.last_attempt, poll.failing_since) == ("hubspot", None, first, first)
    assert poll.error is not None and "connection refused" in poll.error
    reader.up = True
    later = first + timedelta(hours=1)
    jobs.poll_all(rt, later)
    with transaction(sessions) as session:
        (poll,) = gather(session, later).polls
    assert (poll.last_ok, poll.last_attempt, poll.error, poll.failing_since) == (later, later, None, None)


def test_audit_export_names_lead_owner_and_team_beside_the_ids(sessions: sessionmaker[Session]) -> None:
    two_leads(sessions)
    with transaction(sessions) as session:
        rows = [json.loads(line) for line in audit.export(session, "jsonl")]
        header = next(iter(audit.export(session, "csv"))).strip().split(",")
    first = rows[0]
    assert (first["lead_id"], first["lead_name"], first["owner_id"], first["owner_name"], first["team_id"],
            first["team_name"]) == ("00QA", "Aisha Al-Mansoori", "r1", "Rep r1", "us", "Team us")
    assert {"lead_name", "owner_name", "team_id", "team_name"} <= set(header)


def test_audit_export_carries_the_typed_columns_and_the_new_owner_by_name(sessions: sessionmaker[Session]) -> None:
    """A's 1 h window: warned 08:48, breach 09:00, reassigned at 09:30 (150 %) to another rep of the team."""
    two_leads(sessions)
    tick(sessions, context(), ny(24, 9, 30).astimezone(UTC))
    with transaction(sessions) as session:
        rows = [json.loads(line) for line in audit.export(session, "jsonl", lead_crm_id="00QA")]
        table = list(csv.DictReader(io.StringIO("".join(audit.export(session, "csv", lead_crm_id="00QA")))))
    ladder = [(r["rule_id"], r["pattern"], r["action"]) for r in rows if r["pattern"] == "sla"]
    assert ladder == [("sla.imminent", "sla", "notify"), ("sla.breach", "sla", "notify"),
                      ("sla.imminent", "sla", None),  # the warning nobody acted on, written at the breach
                      ("sla.reassign", "sla", "reassign")]
    moved = next(r for r in rows if r["action"] == "reassign")
    assert moved["to_owner"] in ("r2", "r3") and moved["to_owner_name"] == f"Rep {moved['to_owner']}"
    assert (moved["owner_id"], moved["owner_name"]) == ("r1", "Rep r1")  # who had it when the step fired
    assert [(r["action"], r["to_owner"], r["to_owner_name"]) for r in table if r["action"] == "reassign"] == [
        ("reassign", moved["to_owner"], moved["to_owner_name"])]
    assert all(r["to_owner_name"] is None for r in rows if r["action"] != "reassign")
