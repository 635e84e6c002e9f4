"""Seed 000 "Combining patterns", replayed through the demo on virtual time: one lead, every pattern
firing on its own rule, in order; the compliance hold silences SLA and stuck steps until it is
cleared, and the clear restarts the clocks with a full window."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sidecar import wiring_demo
from tests.conftest import ROOT

SCENARIO = ROOT / "config" / "scenarios" / "combining-patterns.yaml"
NY = ZoneInfo("America/New_York")
ARRIVAL = datetime(2026, 11, 24, 8, 0, tzinfo=NY)

# By hand, New York time (US-East open 08:00-18:00; the lead's NEW window is 1 business hour):
# ladder at 80/100/150 % of each owner's fresh window (nobody works the lead, so each reassignment
# starts a new one); stuck at 2x/3x/4x of the NEW window since arrival regardless of owner changes;
# the score crosses 85 at Wed 09:00; the sanctions flag lands Wed 10:00 and holds it.
SLA = [("sla", "sla_breach_imminent", "sla.imminent"), ("sla", "sla_breach", "sla.breach"),
       ("sla", "notification_ignored", "sla.imminent")]
REASSIGN = ("sla", "sla_breach_auto_reassign", "sla.reassign")


def _ladder(imminent: str, breach: str) -> list[tuple[str, str, str, str]]:
    return [(*SLA[0], imminent), (*SLA[1], breach), (*SLA[2], breach)]


EXPECTED = [
    ("first_response", "first_response_task", "first_response", "Tue 08:00"),
    *_ladder("Tue 08:48", "Tue 09:00"), (*REASSIGN, "Tue 09:30"),
    ("stuck", "stuck_lead", "stuck.owner", "Tue 10:00"),
    *_ladder("Tue 10:18", "Tue 10:30"),
    ("stuck", "stuck_lead", "stuck.manager", "Tue 11:00"), (*REASSIGN, "Tue 11:00"),
    (*SLA[0], "Tue 11:48"), ("stuck", "stuck_lead", "stuck.review", "Tue 12:00"), (*SLA[1], "Tue 12:00"),
    (*SLA[2], "Tue 12:00"), (*REASSIGN, "Tue 12:30"),
    *_ladder("Tue 13:18", "Tue 13:30"), (*REASSIGN, "Tue 14:00"),
    *_ladder("Tue 14:48", "Tue 15:00"), (*REASSIGN, "Tue 15:30"),
    *_ladder("Tue 16:18", "Tue 16:30"), (*REASSIGN, "Tue 17:00"),
    *_ladder("Tue 17:48", "Tue 18:00"), (*REASSIGN, "Wed 08:30"),  # the night is closed
    ("high_value", "high_value_flag", "high_value", "Wed 09:00"),
    *_ladder("Wed 09:18", "Wed 09:30"),
    ("compliance", "compliance_hold", "compliance.hold", "Wed 10:00"),
    ("compliance", "compliance_cleared", "compliance.hold", "Fri 08:00"),  # Thu is Thanksgiving
    (*SLA[0], "Fri 08:24"),
]


def test_each_pattern_fires_on_its_own_rule_and_the_hold_pauses_the_clocks(tmp_path: Path) -> None:
    wiring_demo.run_demo(crm="salesforce", seed=1, scenario=SCENARIO, policy=None, speed=None,
                    duration=timedelta(hours=72, minutes=25), out=tmp_path, port=0)
    with sqlite3.connect(tmp_path / "demo.db") as db:
        (version,) = db.execute("SELECT version FROM policy_versions").fetchone()
        rows = db.execute("SELECT a.pattern, a.kind, a.rule_id, a.at, a.policy_version, a.window_s FROM audit a "
                          "JOIN leads l ON l.id = a.lead_id WHERE l.name LIKE 'Aisha%' ORDER BY a.id").fetchall()
    at = [datetime.fromisoformat(r[3]).replace(tzinfo=UTC) for r in rows]
    assert [(p, k, rule, t.astimezone(NY).strftime("%a %H:%M")) for (p, k, rule, *_), t in zip(rows, at, strict=True)] \
        == EXPECTED
    assert at[0] == ARRIVAL and at[1] - at[0] == timedelta(minutes=48)  # 80 % of the 1 h window
    assert {r[4] for r in rows} == {version}  # every step names the policy version that fired it
    hold = next(i for i, r in enumerate(rows) if r[1] == "compliance_hold")
    clear = next(i for i, r in enumerate(rows) if r[1] == "compliance_cleared")
    assert clear == hold + 1  # nothing of SLA or stuck in 46 hours on hold
    # Cleared: a full window again, not the remainder of the paused one (which had run out): the
    # high-value flag halved later windows to 30 minutes, and the warning is at 80 % of all of it.
    warning = rows[clear + 1]
    assert warning[5] == 1800
    assert at[clear + 1] - at[clear] == timedelta(seconds=0.8 * 1800)


def test_pattern_actions_are_checked_like_the_others(tmp_path: Path) -> None:
    from connectors.emulators.scenario import load_scenario

    bad = tmp_path / "bad.yaml"
    bad.write_text("start: 2026-11-24T08:00:00-05:00\nevents:\n"
                   "  - {at: 1h, set_score: {lead: a}}\n"
                   "  - {at: 1h, flag: {lead: a, flag: pep, colour: red}}\n"
                   "  - {at: 1h, signal: {lead: a}}\n"
                   "  - {at: 1h, complete_task: {lead: a, task: reminder}}\n"
                   "  - {at: 1h, compliance_decision: {lead: a, decision: maybe}}\n")
    try:
        load_scenario(bad)
    except ValueError as exc:
        text = str(exc)
    else:
        raise AssertionError("a bad scenario loaded")
    for words in ("events[0].set_score: missing ['score']", "events[1].flag: unknown keys ['colour']",
                  "events[2].signal: missing ['id', 'type']",
                  "events[3].complete_task.task: 'reminder' is not first_response or any",
                  "events[4].compliance_decision: missing ['reason']",
                  "events[4].compliance_decision.decision: 'maybe' is not clear or reject"):
        assert words in text, words
    good = load_scenario(ROOT / "config" / "scenarios" / "combining-patterns.yaml")
    assert [e.action for e in good.events] == ["create_lead", "set_score", "flag", "compliance_decision"]


def test_signal_complete_task_and_score_actions_reach_the_sidecar(tmp_path: Path) -> None:
    from connectors.emulators.demo import Demo, DemoOptions
    from connectors.emulators.scenario import Scenario, ScenarioEvent

    lead = {"id": "ravi", "name": "Ravi Iyer", "company": "Tata Digital", "market": "US-East",
            "source": "paid_social", "owner": "us-east-rep3", "score": 40}
    script = [(0, "create_lead", lead), (10, "complete_task", {"lead": "ravi", "task": "first_response"}),
              (20, "signal", {"lead": "ravi", "type": "usage_drop", "id": "sig-1"}),
              (30, "set_score", {"lead": "ravi", "score": 90})]
    start = ARRIVAL
    scenario = Scenario(start, "salesforce", tuple(ScenarioEvent(start + timedelta(minutes=m), a, args)
                                                   for m, a, args in script))
    demo = Demo(DemoOptions(crm="salesforce", seed=1, scenario=scenario, duration=timedelta(minutes=90)), tmp_path)
    try:
        demo.run()
        assert demo.salesforce is not None
        crm_id = demo.tracked["ravi"].crm_id
        first = [t for t in demo.salesforce.records("Task")
                 if t["WhoId"] == crm_id and str(t.get("Sidecar_Key__c") or "").startswith("first-response:")]
    finally:
        demo.close()
    assert [t["IsClosed"] for t in first] == [True]  # ticked off by the scripted owner
    with sqlite3.connect(tmp_path / "demo.db") as db:
        rows = db.execute("SELECT a.pattern, a.kind, a.at FROM audit a JOIN leads l ON l.id = a.lead_id "
                          "WHERE l.crm_id = ? ORDER BY a.id", (crm_id,)).fetchall()
    kinds = [(p, k, datetime.fromisoformat(t).replace(tzinfo=UTC).astimezone(NY).strftime("%H:%M"))
             for p, k, t in rows]
    # the completed task stopped the NEW ladder: no SLA warning at 08:48
    assert [k for k in kinds if k[0] in ("first_response", "churn", "high_value", "sla")] == [
        ("first_response", "first_response_task", "08:00"), ("churn", "churn_risk", "08:20"),
        ("high_value", "high_value_flag", "08:30")]
