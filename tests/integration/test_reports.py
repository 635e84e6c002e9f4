"""`sidecar report` against figures worked out by hand for a small morning in New York (1 h windows).

    A  Aisha  web_form     r1  08:00  nobody acts: 80 % and breach at the 09:00 tick; call 09:20; Qualified 09:50
    B  Jonas  paid_social  r2  08:00  call 08:30, Working 08:31, Qualified 09:00, Proposal 09:30 (score 70: high)
    C  Chen   web_form     r2  09:00  nobody acts: 80 % and breach at the 10:00 tick; still waiting at 10:05
    D  Dana   paid_social  r3  09:30  call 09:40 (score 70: high)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from sidecar import cli
from sidecar.engine.evaluator import tick
from sidecar.engine.policies import PolicyBook
from sidecar.report_formats import as_csv, as_html, as_json
from sidecar.reports import Report, build_report
from sidecar.store.db import transaction
from tests.support import add_team, apply_policy, call, context, ingest, ny, policy_raw, snapshot

START, END = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
NOW = ny(24, 10, 5).astimezone(UTC)


def morning(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)

    def lead(crm_id: str, name: str, source: str, owner: str, arrived: datetime, at: datetime, **more: object) -> None:
        ingest(sessions, ctx, snapshot(crm_id, at=at, name=name, source=source, owner=owner, created_at=arrived,
                                       **more))  # type: ignore[arg-type]

    a, b, c, d = ny(24, 8), ny(24, 8), ny(24, 9), ny(24, 9, 30)
    lead("00QA", "Aisha Al-Mansoori", "web_form", "r1", a, a)
    lead("00QB", "Jonas Becker", "paid_social", "r2", b, b, score=70.0)
    lead("00QB", "Jonas Becker", "paid_social", "r2", b, ny(24, 8, 30), score=70.0,
         activities=(call("00T-B", ny(24, 8, 30)),))
    lead("00QB", "Jonas Becker", "paid_social", "r2", b, ny(24, 8, 31), score=70.0, crm_status="Working - Contacted")
    tick(sessions, ctx, ny(24, 9).astimezone(UTC))
    lead("00QB", "Jonas Becker", "paid_social", "r2", b, ny(24, 9), score=70.0, crm_status="Qualified")
    lead("00QC", "Chen Wei", "web_form", "r2", c, c)
    lead("00QA", "Aisha Al-Mansoori", "web_form", "r1", a, ny(24, 9, 20), activities=(call("00T-A", ny(24, 9, 20)),))
    lead("00QB", "Jonas Becker", "paid_social", "r2", b, ny(24, 9, 30), score=70.0, crm_status="Proposal")
    lead("00QD", "Dana Smith", "paid_social", "r3", d, d, score=70.0)
    lead("00QD", "Dana Smith", "paid_social", "r3", d, ny(24, 9, 40), score=70.0,
         activities=(call("00T-D", ny(24, 9, 40)),))
    lead("00QA", "Aisha Al-Mansoori", "web_form", "r1", a, ny(24, 9, 50), crm_status="Qualified")
    tick(sessions, ctx, ny(24, 10).astimezone(UTC))


@pytest.fixture
def report(sessions: sessionmaker[Session]) -> Report:
    morning(sessions)
    with transaction(sessions) as session:
        return build_report(session, PolicyBook(), START, END, NOW)


def rows(report: Report, key: str) -> list[tuple[object, ...]]:
    return next(section.rows for section in report.sections if section.key == key)


def test_waiting_and_overdue_name_leads_and_owners(report: Report) -> None:
    assert rows(report, "waiting_first_response") == [
        ("Chen Wei", "Rep r2", "Team us", "web_form", "2026-11-24 14:00", 65.0)]
    assert rows(report, "overdue_by_owner") == [("Rep r2", "Team us", 1)]  # A's NEW clock closed at Qualified


def test_missed_slas_by_source_and_slowest_categories(report: Report) -> None:
    assert rows(report, "missed_by_source") == [("web_form", 2, 2, "100 %"), ("paid_social", 2, 0, "0 %")]
    # unclear (no score): A answered after 80 min, C not at all; high: B 30 min, D 10 min
    assert rows(report, "slowest_categories") == [("unclear", 1, 80.0, 80.0, 1), ("high", 2, 20.0, 30.0, 0)]


def test_rules_firing_most_and_recoveries(report: Report) -> None:
    # A and C: warning and breach each; the "ignored" rows are observations, not steps
    assert rows(report, "rules_firing") == [("sla.breach", "sla_breach", 2), ("sla.imminent", "sla_breach_imminent", 2)]
    assert rows(report, "recovered") == [
        ("Aisha Al-Mansoori", "2026-11-24 14:00", "2026-11-24 14:20", "call_logged", "Rep r1")]


def test_response_speed_against_qualification_and_booking(report: Report) -> None:
    assert rows(report, "speed_vs_outcome") == [
        ("within 1 h", 2, 1, "50 %", 1, "50 %"),  # B qualified and booked (Proposal), D neither
        ("1-4 h", 1, 1, "100 %", 0, "0 %"),  # A qualified
        ("4-24 h", 0, 0, "-", 0, "-"), ("over 24 h", 0, 0, "-", 0, "-"),
        ("no response", 1, 0, "0 %", 0, "0 %")]  # C


def test_formats_carry_the_same_figures(report: Report) -> None:
    data = json.loads(as_json(report))
    waiting = next(s for s in data["sections"] if s["key"] == "waiting_first_response")
    assert waiting["rows"] == [{"lead": "Chen Wei", "owner": "Rep r2", "team": "Team us", "source": "web_form",
                                "arrived (UTC)": "2026-11-24 14:00", "waiting (min)": 65.0}]
    text = as_csv(report)
    assert "# Which lead sources have the most missed SLAs?\r\nsource,leads,missed SLA,missed %\r\n" \
           "web_form,2,2,100 %\r\n" in text
    page = as_html(report)
    assert "<td>Aisha Al-Mansoori</td>" in page and "<script" not in page and "http" not in page


def test_report_command(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    morning(sessions)
    monkeypatch.setattr(cli.cli_report, "sessions", lambda: sessions)
    monkeypatch.setattr(cli.cli_report, "now", lambda: NOW)
    runner = CliRunner()
    shown = runner.invoke(cli.app, ["report", "--from", "2026-11-24", "--to", "2026-11-25"])
    assert shown.exit_code == 0, shown.output
    assert "Which owners have overdue leads?" in shown.output and "Chen Wei" in shown.output
    as_file = runner.invoke(cli.app, ["report", "--from", "2026-11-24", "--to", "2026-11-25", "--format", "csv"])
    assert as_file.exit_code == 0 and "web_form,2,2,100 %" in as_file.output
    bad = runner.invoke(cli.app, ["report", "--format", "pdf"])
    assert bad.exit_code == 2 and "--format must be one of table, csv, json, html" in bad.output
