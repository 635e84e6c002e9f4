"""`sidecar explain` for the scripted morning, line by line: "I never got a warning" answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.explain import explain
from sidecar.store.db import transaction
from tests.e2e.visibility_fixture import Morning, serve_morning


@pytest.fixture(scope="module")
def morning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Morning]:
    yield from serve_morning(tmp_path_factory.mktemp("explain"))


def _explain(morning: Morning, name: str) -> list[str]:
    with transaction(morning.demo.sessions) as session:
        return explain(session, morning.demo.runtime.ctx.book, "salesforce", morning.lead_id(name),
                       morning.demo.clock.now())


def test_a_called_lead_never_warned_says_the_clock_closed_first(morning: Morning) -> None:
    jonas = morning.lead_id("Jonas Becker")
    lines = _explain(morning, "Jonas Becker")
    version = lines[1].split(" under policy ")[1].split(" ")[0]
    assert lines[0].startswith(f"lead Jonas Becker (salesforce {jonas}): state CONTACTED, market US-East, "
                               "source webinar, intent mid, owner ")
    # Clock ids: Aisha's SLA and stuck clocks (#1, #2) start first; each state's stuck clock starts
    # beside its SLA clock and lists the stuck steps (multiples of the window), not the SLA ladder.
    # The call at 08:40 is progress: the NEW SLA clock restarts (#5) and the status change at 08:45
    # closes both it and the stuck clock.
    closed_by_progress = "first (progress, Tue 24 Nov 08:40 EST)"
    closed_by_status = "first (state_left, Tue 24 Nov 08:45 EST)"
    default_rule = ("  window rule new.default: 4h = 4h 00m of business time; matched state NEW, market *, source *, "
                    "intent * (specificity 0, rule 1 in the file)")
    assert lines[1:27] == [
        f"clock #3 (sla, NEW) under policy {version} '2026-Q4 policy': started Tue 24 Nov 08:00 EST, "
        "closed Tue 24 Nov 08:40 EST (progress)",
        default_rule,
        "    no other window rule matched this lead",
        "  calendar US-East (America/New_York): 0h 40m of business time between Tue 24 Nov 08:00 EST and "
        "Tue 24 Nov 08:40 EST",
        "    counted Tue 24 Nov 08:00 EST – 08:40 (0h 40m)",
        "    step 1 sla.imminent at 80% (3h 12m business): due Tue 24 Nov 11:12 EST; not fired: the clock closed "
        + closed_by_progress,
        "    step 2 sla.breach at 100% (4h 00m business): due Tue 24 Nov 12:00 EST; not fired: the clock closed "
        + closed_by_progress,
        "    step 3 sla.reassign at 150% (6h 00m business): due Tue 24 Nov 14:00 EST; not fired: the clock closed "
        + closed_by_progress,
        f"clock #4 (stuck, NEW) under policy {version} '2026-Q4 policy': started Tue 24 Nov 08:00 EST, "
        "closed Tue 24 Nov 08:45 EST (state_left)",
        default_rule,
        "    no other window rule matched this lead",
        "  calendar US-East (America/New_York): 0h 45m of business time between Tue 24 Nov 08:00 EST and "
        "Tue 24 Nov 08:45 EST",
        "    counted Tue 24 Nov 08:00 EST – 08:45 (0h 45m)",
        "    step 1 stuck.owner at 200% (8h 00m business): due Tue 24 Nov 16:00 EST; not fired: the clock closed "
        + closed_by_status,
        "    step 2 stuck.manager at 300% (12h 00m business): due Wed 25 Nov 10:00 EST; not fired: the clock "
        "closed " + closed_by_status,
        "    step 3 stuck.review at 400% (16h 00m business): due Wed 25 Nov 14:00 EST; not fired: the clock "
        "closed " + closed_by_status,
        f"clock #5 (sla, NEW) under policy {version} '2026-Q4 policy': started Tue 24 Nov 08:40 EST, "
        "closed Tue 24 Nov 08:45 EST (state_left)",
        default_rule,
        "    no other window rule matched this lead",
        "  calendar US-East (America/New_York): 0h 05m of business time between Tue 24 Nov 08:40 EST and "
        "Tue 24 Nov 08:45 EST",
        "    counted Tue 24 Nov 08:40 EST – 08:45 (0h 05m)",
        "    step 1 sla.imminent at 80% (3h 12m business): due Tue 24 Nov 11:52 EST; not fired: the clock closed "
        + closed_by_status,
        "    step 2 sla.breach at 100% (4h 00m business): due Tue 24 Nov 12:40 EST; not fired: the clock closed "
        + closed_by_status,
        "    step 3 sla.reassign at 150% (6h 00m business): due Tue 24 Nov 14:40 EST; not fired: the clock closed "
        + closed_by_status,
        f"clock #6 (sla, CONTACTED) under policy {version} '2026-Q4 policy': started Tue 24 Nov 08:45 EST, open",
        "  window rule contacted.default: 2bd = 20h 00m of business time; matched state CONTACTED, market *, "
        "source *, intent * (specificity 0, rule 6 in the file)",
    ]


def test_an_escalated_lead_shows_why_its_rule_won_and_each_effect(morning: Morning) -> None:
    lines = _explain(morning, "Aisha Al-Mansoori")
    assert lines[2:5] == [
        "  window rule new.high_intent: 1h = 1h 00m of business time; matched state NEW, market *, source *, "
        "intent high (specificity 1, rule 2 in the file)",
        "    beat new.default (4h): less specific (0 < 1)",
        "    beat new.paid_social (1h): as specific (1) but later in the file (rule 3)",
    ]
    assert lines[7].startswith("    step 1 sla.imminent at 80% (0h 48m business): due Tue 24 Nov 08:48 EST; "
                               "fired Tue 24 Nov 08:48 EST (audit #3 sla_breach_imminent, 0h 48m used), did: notify")
    # audit #3: #1 and #2 are the first-response tasks created as Aisha and Jonas arrived.
    assert lines[8].startswith("      effect notify → us-east-rep3@example.com: done (")
    assert lines[10] == "      effect notify → C00000002: done (C00000002:1795528800.000000)"
    assert lines[11].startswith("      effect add note: done (00T")
    reassign = next(line for line in lines if "step 3 sla.reassign" in line and "fired Tue 24 Nov 09:30" in line)
    assert "did: reassign to " in reassign
    with pytest.raises(LookupError, match="no salesforce lead 00Qnope"), \
            transaction(morning.demo.sessions) as session:
        explain(session, morning.demo.runtime.ctx.book, "salesforce", "00Qnope", morning.demo.clock.now())


def test_the_calendar_lines_skip_closed_hours_and_holidays() -> None:
    from datetime import UTC, datetime

    from sidecar.calendar import BusinessCalendar
    from sidecar.explain import _calendar_lines

    calendar = BusinessCalendar("America/New_York", {"mon-fri": [("08:00", "18:00")]}, country="US", subdiv="NY")
    # Wednesday 17:00 to Friday 09:00 New York: Thanksgiving (Thursday 26 Nov) is skipped whole.
    lines = _calendar_lines(calendar, "US-East", datetime(2026, 11, 25, 22, tzinfo=UTC),
                            datetime(2026, 11, 27, 14, tzinfo=UTC))
    assert lines == [
        "  calendar US-East (America/New_York): 2h 00m of business time between Wed 25 Nov 17:00 EST and "
        "Fri 27 Nov 09:00 EST",
        "    counted Wed 25 Nov 17:00 EST – 18:00 (1h 00m)",
        "    skipped Wed 25 Nov 18:00 EST → Fri 27 Nov 08:00 EST: closed (holiday Thu 26 Nov)",
        "    counted Fri 27 Nov 08:00 EST – 09:00 (1h 00m)",
    ]
    dst = _calendar_lines(calendar, "US-East", datetime(2026, 10, 30, 21, tzinfo=UTC),
                          datetime(2026, 11, 2, 14, tzinfo=UTC))
    assert "    DST: the clock changed before Mon 02 Nov 08:00 EST (UTC offset -04:00 → -05:00); hours are " \
           "wall-clock hours" in dst


def test_cli_explain_prints_the_same_lines(morning: Morning, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sidecar.cli import app

    monkeypatch.setenv("SIDECAR_DATABASE_URL", f"sqlite:///{morning.demo.workdir / 'demo.db'}")
    result = CliRunner().invoke(app, ["explain", "salesforce", morning.lead_id("Jonas Becker")])
    assert result.exit_code == 0, result.output
    assert "step 1 sla.imminent at 80% (3h 12m business): due Tue 24 Nov 11:12 EST; not fired: the clock " \
           "closed first" in result.output
    missing = CliRunner().invoke(app, ["explain", "salesforce", "00Qnope"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
