"""`sidecar demo` end to end: the files it writes agree with each other and with the audit, one to
one, and the same seed gives the same audit."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sidecar import wiring_demo
from sidecar.store.db import make_engine, session_factory, transaction
from sidecar.store.models import AuditRow, OutboxRow

SPAN = timedelta(days=2)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    wiring_demo.run_demo(crm="both", seed=1, scenario=None, policy=None, speed=None, duration=SPAN, out=out, port=0)
    return out


def audit_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]


def effects(out: Path) -> list[OutboxRow]:
    engine = make_engine(f"sqlite:///{out / 'demo.db'}")
    with transaction(session_factory(engine)) as session:
        rows = list(session.scalars(select(OutboxRow)))
    engine.dispose()
    return rows


def test_demo_escalates_in_both_crms_and_nothing_fails(demo_out: Path) -> None:
    kinds = Counter((row["crm"], row["kind"]) for row in audit_rows(demo_out))
    for crm in ("salesforce", "hubspot"):
        for kind in ("sla_breach_imminent", "sla_breach", "sla_breach_auto_reassign"):
            assert kinds[(crm, kind)] > 0, (crm, kind, kinds)
    assert {row.status for row in effects(demo_out)} == {"done"}
    assert all(row["policy_version"] and row["rule_id"] for row in audit_rows(demo_out))


def test_every_warning_and_breach_has_exactly_one_slack_message_in_the_right_place(demo_out: Path) -> None:
    messages = json.loads((demo_out / "slack.json").read_text())
    by_key = Counter(m["metadata"]["event_payload"]["key"] for m in messages if m.get("metadata"))
    assert len(by_key) == len(messages) and set(by_key.values()) == {1}  # no duplicates
    where = {m["metadata"]["event_payload"]["key"]: m for m in messages}
    everything = {row.idempotency_key: row for row in effects(demo_out) if row.action == "notify"}
    audit_by_id = {row.audit_id for row in everything.values()}
    # The demo's team on Teams (DACH) is told there: test_the_dach_team_is_told_in_teams_one_card_each.
    notifications = {key: row for key, row in everything.items() if not row.payload["via"].startswith("teams_")}
    checked = Counter(row.payload["kind"] for row in everything.values() if row.payload["via"].startswith("teams_"))
    for key, row in notifications.items():
        message = where[key]  # KeyError = a notification with no Slack message
        kind, persona = row.payload["kind"], row.payload["persona"]
        lead = row.payload["lead"]
        assert lead["name"] in message["text"] and lead["company"] in message["text"]
        if persona in ("owner", "new_owner"):
            assert message["kind"] == "im" and message["recipient"] is not None
        if persona == "manager":
            assert message["kind"] == "channel" and message["name"].startswith("sales-")
        shape = (f"/lightning/r/Lead/{lead['crm_id']}/view" if lead["crm"] == "salesforce"
                 else f"https://app.hubspot.com/contacts/24681357/record/0-1/{lead['crm_id']}")
        assert lead["record_url"].endswith(shape) and lead["record_url"] in json.dumps(message["blocks"])
        checked[kind] += 1
    assert len(where) == len(notifications)
    rows = audit_rows(demo_out)
    assert checked["sla_breach_imminent"] == sum(r["kind"] == "sla_breach_imminent" for r in rows)
    assert checked["sla_breach"] == sum(r["kind"] == "sla_breach" for r in rows)
    # Every ladder step and every stuck-lead level that tells someone has its messages (stuck leads
    # in NEW for 2x its window, whose levels notify owner / manager / the ops review channel).
    assert checked["stuck_lead"] == sum(len(_notified(r)) for r in rows if r["kind"] == "stuck_lead")
    # Compliance holds (the synthetic org has flagged leads) tell the compliance channel, and the owner if any.
    holds = [r for r in rows if r["kind"] == "compliance_hold"]
    assert checked["compliance_hold"] >= len(holds) > 0
    # High-value flags (owner, manager; the VP for strategic accounts) and churn signals (owner,
    # customer success) tell someone each time; a lead paused for its account's churn hold tells its owner.
    assert checked["high_value_flag"] >= sum(r["kind"] == "high_value_flag" for r in rows) > 0
    assert checked["churn_risk"] >= sum(r["kind"] == "churn_risk" for r in rows) > 0
    told = ("stuck_lead", "compliance_hold", "high_value_flag", "churn_risk", "churn_outreach_paused")
    assert len(audit_by_id) == sum(r["kind"].startswith("sla_breach") or r["kind"] in told for r in rows)


def test_the_dach_team_is_told_in_teams_one_card_each(demo_out: Path) -> None:
    """The demo org puts DACH on Microsoft Teams: its owners' warnings reach a chat with them, its
    manager's breaches its channel, each as one Adaptive Card with the lead and its record link;
    the other teams stay on Slack."""
    cards = json.loads((demo_out / "teams.json").read_text())
    rows = audit_rows(demo_out)
    dach = {r["team_id"] for r in rows if r["team_name"] == "DACH"}
    assert len(dach) == 1
    leads = json.loads((demo_out / "crm.json").read_text())["leads"]
    team_of = {(lead["crm"], lead["crm_id"]): lead["team"] for lead in leads.values()}
    by_key = Counter(card["key"] for card in cards)
    assert cards and set(by_key.values()) == {1} and not any(card["duplicate"] for card in cards)
    notify = [row for row in effects(demo_out) if row.action == "notify"]
    on_teams = {row.idempotency_key: row for row in notify if row.payload["via"].startswith("teams_")}
    assert set(by_key) == set(on_teams)  # one card per Teams notification, none without one
    for row in notify:  # the lead's team decides the chat system; a named channel (ops review...) stays Slack
        lead = row.payload["lead"]
        if row.payload["via"] != "channel":
            assert row.payload["via"].startswith("teams_") == (team_of[(lead["crm"], lead["crm_id"])] in dach)
    told = Counter()
    for card in cards:
        row = on_teams[card["key"]]
        lead, persona = row.payload["lead"], row.payload["persona"]
        text = json.dumps(card["card"], ensure_ascii=False)
        assert lead["name"] in text and lead["company"] in text
        assert card["card"]["actions"][0]["type"] == "Action.OpenUrl"
        assert card["card"]["actions"][0]["url"] == lead["record_url"]
        if persona in ("owner", "new_owner"):
            assert card["kind"] == "chat" and card["recipient"] == row.payload["recipient_email"]
        if persona == "manager":
            assert card["kind"] == "channel" and card["channel"] == "DACH"
            assert any("/dashboard/leads/" in action["url"] for action in card["card"]["actions"])
        told[(row.payload["kind"], persona)] += 1
    # one to one with the audit: every warning to a DACH owner, every breach to the DACH manager
    in_dach = [r for r in rows if r["team_id"] in dach]
    assert told[("sla_breach_imminent", "owner")] == sum(r["kind"] == "sla_breach_imminent" for r in in_dach) > 0
    assert told[("sla_breach", "manager")] == sum(r["kind"] == "sla_breach" for r in in_dach) > 0


def _notified(row: dict[str, Any]) -> list[str]:
    """The personas a stuck-lead level of the example policy tells (owner, manager, ops review)."""
    return ["owner"] if row["rule_id"] == "stuck.owner" else ["manager"] if row["rule_id"] == "stuck.manager" \
        else ["ops_review"]


def test_crm_tasks_notes_and_owner_changes_match_the_audit_one_to_one(demo_out: Path) -> None:
    crm = json.loads((demo_out / "crm.json").read_text())
    sf_keys = Counter(t["Sidecar_Key__c"] for t in crm["salesforce"]["Task"] if t.get("Sidecar_Key__c"))
    hs_keys = Counter(r["properties"]["sidecar_idempotency_key"] for kind in ("tasks", "notes")
                      for r in crm["hubspot"][kind] if r["properties"].get("sidecar_idempotency_key"))
    written = {row.idempotency_key: row for row in effects(demo_out) if row.action in ("create_task", "add_note")}
    assert set(written) == set(sf_keys) | set(hs_keys)
    assert set(sf_keys.values()) | set(hs_keys.values()) == {1}
    rows = audit_rows(demo_out)
    breaches = [r for r in rows if r["kind"] == "sla_breach"]
    reassigned = [r for r in rows if r["kind"] == "sla_breach_auto_reassign" and r["details"]["to_owner"]]
    first_response = [r for r in rows if r["kind"] == "first_response_task"]
    assert sum(row.action == "add_note" for row in written.values()) == len(breaches)
    ladder_tasks = [row for row in written.values() if row.action == "create_task" and row.idempotency_key.startswith(
        "clock:")]
    # Each reassignment gives its new owner one task: the lead's open task re-owned, else a follow-up.
    engine = make_engine(f"sqlite:///{demo_out / 'demo.db'}")
    with transaction(session_factory(engine)) as session:
        moves = [{o.action for o in session.scalars(select(OutboxRow).where(OutboxRow.audit_id == a.id))}
                 for a in session.scalars(select(AuditRow).where(AuditRow.pattern == "sla",
                                                                 AuditRow.action == "reassign"))]
    engine.dispose()
    assert len(moves) == len(reassigned) and all(("update_task" in m) != ("create_task" in m) for m in moves)
    # ...and no lead is left with two open sidecar tasks (first-response or follow-up) in either CRM.
    lead_task = re.compile(r"first-response:.*|clock:\d+:step:\d+:task:.*")
    open_sf = Counter(t["WhoId"] for t in crm["salesforce"]["Task"]
                      if lead_task.fullmatch(t.get("Sidecar_Key__c") or "") and not t.get("IsClosed"))
    open_hs = Counter(r["associations"]["contacts"][0] for r in crm["hubspot"]["tasks"]
                      if lead_task.fullmatch(r["properties"].get("sidecar_idempotency_key") or "")
                      and r["properties"].get("hs_task_status") != "COMPLETED")
    assert open_sf and open_hs and set(open_sf.values()) | set(open_hs.values()) == {1}
    retention = [row for row in written.values() if row.action == "create_task" and row.idempotency_key.startswith(
        "signal:")]
    assert len(retention) == sum(r["kind"] == "churn_risk" and r["owner_id"] is not None for r in rows)
    assert sum(key.startswith("first-response:") for key in written) == len(first_response) > 0
    # every task the sidecar wrote is one of these three kinds
    assert sum(row.action == "create_task" for row in written.values()) == \
        len(ladder_tasks) + len(retention) + len(first_response)
    # every reassignment is an owner change in its CRM, to the rep the audit names
    sf_owner_changes = Counter((h["LeadId"], h["NewValue"]) for h in crm["salesforce"]["LeadHistory"]
                               if h["Field"] == "Owner")
    hs_owner_changes = {(row.payload["lead"]["crm_id"], row.payload["to_owner_id"]) for row in effects(demo_out)
                        if row.action == "change_owner" and row.status == "done"}
    for row in reassigned:
        to_owner = row["details"]["to_owner"]
        if row["crm"] == "salesforce":
            assert sf_owner_changes[(row["lead_id"], to_owner)] >= 1, row
        else:
            assert (row["lead_id"], to_owner) in hs_owner_changes, row


def test_same_seed_same_audit(demo_out: Path, tmp_path: Path) -> None:
    wiring_demo.run_demo(crm="both", seed=1, scenario=None, policy=None, speed=None, duration=SPAN, out=tmp_path,
                    port=0)
    def timeline(out: Path) -> list[tuple[str, str, str, str]]:
        return [(r["at"], r["kind"], r["lead_id"], r["rule_id"]) for r in audit_rows(out)]
    assert timeline(tmp_path) == timeline(demo_out)
