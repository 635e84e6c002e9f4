"""A scripted morning replayed through the demo: exact instants, the PTO rep skipped, progress honoured."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.emulators.scenario import load_scenario, parse_offset
from sidecar import wiring_demo
from tests.conftest import ROOT

SCENARIO = ROOT / "config" / "scenarios" / "paid-social-morning.yaml"
NY = ZoneInfo("America/New_York")


def test_scripted_morning(tmp_path: Path) -> None:
    wiring_demo.run_demo(crm="salesforce", seed=1, scenario=SCENARIO, policy=None, speed=None,
                    duration=timedelta(hours=4), out=tmp_path, port=0)
    leads = json.loads((tmp_path / "crm.json").read_text())["leads"]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    aisha = [(r["kind"], datetime.fromisoformat(r["at"]).astimezone(NY).strftime("%H:%M"), r["details"])
             for r in audit if r["lead_id"] == leads["aisha"]["crm_id"] and r["kind"].startswith("sla_")]
    assert [(kind, at) for kind, at, _ in aisha[:3]] == [
        ("sla_breach_imminent", "08:48"), ("sla_breach", "09:00"), ("sla_breach_auto_reassign", "09:30")]
    reassign = aisha[2][2]
    assert reassign["excluded"] == {rep_id("us-east-rep2", tmp_path): "on PTO"}
    assert reassign["from_owner"] == rep_id("us-east-rep3", tmp_path)
    assert reassign["to_owner"] in {rep_id("us-east-rep1", tmp_path), rep_id("us-east-rep4", tmp_path)}
    # nobody acts in a scripted run, so the new owner's fresh window runs out too, 80 % after 09:30
    assert aisha[3][:2] == ("sla_breach_imminent", "10:18")
    # jonas was called in time: his first-response task is all the audit holds for him
    assert [r["kind"] for r in audit if r["lead_id"] == leads["jonas"]["crm_id"]] == ["first_response_task"]


def rep_id(key: str, out: Path) -> str:
    """The Salesforce user id the demo created for a rep key (its e-mail is <key>@example.com)."""
    with sqlite3.connect(out / "demo.db") as db:
        (rep_id,) = db.execute("SELECT id FROM reps WHERE email = ? AND crm = 'salesforce'",
                               (f"{key}@example.com",)).fetchone()
    return str(rep_id)


def test_scenario_files_report_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("start: 2026-11-24T08:00:00\ncrm: pipedrive\nevents:\n"
                   "  - {at: soon, log_call: {lead: x}}\n  - {at: 1h, create_lead: {name: A, colour: red}}\n")
    with pytest.raises(ValueError) as caught:
        load_scenario(bad)
    text = str(caught.value)
    for words in ("start: give an aware ISO time", "crm: 'pipedrive'", "events[0].at", "unknown keys ['colour']",
                  "missing ['id']"):
        assert words in text
    assert parse_offset("90m") == timedelta(minutes=90) and parse_offset("2d") == timedelta(days=2)
