"""`sidecar calibrate` against figures worked out by hand: the morning of test_reports, then a tick
at 10:30 (C, untouched since 09:00, reaches 150 % and is reassigned; D's 80 % warning fires).

    breach rate   TEST / web_form: A and C breached of 2 leads = 100 %  -> flagged (> 20 %)
                  TEST / paid_social: 0 of 2 = 0 %                     -> ok
    reassignments team us: C of 4 leads = 25 %                         -> flagged (> 10 %)
    ignored       sla.imminent: sent to A, C, D = 3; A's and C's went unanswered until the breach = 2
                  (67 %)                                               -> flagged (> 50 %)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from sidecar import cli
from sidecar.calibration import Finding, calibrate, quarter_bounds
from sidecar.engine.evaluator import tick
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import Calibration
from sidecar.store.db import transaction
from tests.conftest import EXAMPLE_POLICY
from tests.integration.test_reports import morning
from tests.support import context, ny

RULES = Calibration(min_count=2)  # a small morning: judge from 2 leads or warnings on


def quarter(sessions: sessionmaker[Session]) -> list[Finding]:
    morning(sessions)
    tick(sessions, context(), ny(24, 10, 30).astimezone(UTC))
    with transaction(sessions) as session:
        return calibrate(session, PolicyBook(), RULES, *quarter_bounds("2026Q4"))


def test_each_finding_with_its_numbers(sessions: sessionmaker[Session]) -> None:
    found = [(f.question, f.subject, f.count, f.total, f.flagged) for f in quarter(sessions)]
    assert found == [
        ("breach_rate", "TEST / web_form", 2, 2, True),
        ("breach_rate", "TEST / paid_social", 0, 2, False),
        ("reassignments", "team Team us", 1, 4, True),
        ("ignored_warnings", "rule sla.imminent", 2, 3, True),
    ]


def test_words_and_thresholds(sessions: sessionmaker[Session]) -> None:
    findings = quarter(sessions)
    assert findings[0].numbers() == "2 of 2 leads breached (100%; threshold 20%)"
    assert findings[0].advice == "widen the window or staff up"
    assert findings[2].numbers() == "1 of 4 leads auto-reassigned (25%; threshold 10%)"
    assert findings[2].advice.startswith("routing problem")
    assert findings[3].numbers() == "2 of 3 warnings ignored (67%; threshold 50%)"
    assert findings[3].advice.startswith("noise")


def test_the_default_minimum_keeps_a_small_sample_unjudged(sessions: sessionmaker[Session]) -> None:
    morning(sessions)
    with transaction(sessions) as session:
        findings = calibrate(session, PolicyBook(), Calibration(), *quarter_bounds("2026Q4"))
    assert findings and not any(f.flagged for f in findings)  # 2 leads < min_count 5


def test_quarters() -> None:
    assert quarter_bounds("2026Q4") == (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert quarter_bounds("2027q1") == (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="like 2026Q4"):
        quarter_bounds("Q4 2026")


def test_calibrate_command_table_and_html(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    morning(sessions)
    tick(sessions, context(), ny(24, 10, 30).astimezone(UTC))
    policy = EXAMPLE_POLICY.read_text().replace("min_count: 5 ", "min_count: 2 ")
    assert policy != EXAMPLE_POLICY.read_text()
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    monkeypatch.setattr(cli.cli_calibrate, "sessions", lambda: sessions)
    runner = CliRunner()
    shown = runner.invoke(cli.app, ["calibrate", "--quarter", "2026Q4", "--policy", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "calibration 2026Q4: 3 finding(s) to act on" in shown.output
    assert "widen the window or staff up" in shown.output
    page = runner.invoke(cli.app, ["calibrate", "--quarter", "2026Q4", "--policy", str(path), "--format", "html"])
    assert page.exit_code == 0 and "<td>2 of 3 warnings ignored (67%; threshold 50%)</td>" in page.output
    bad = runner.invoke(cli.app, ["calibrate", "--quarter", "Q4"])
    assert bad.exit_code == 2 and "--quarter: 'Q4' is not a quarter" in bad.output
