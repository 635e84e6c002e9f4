"""Compliance decisions on the dashboard's lead page and over /api (manager or admin, CSRF, audited with
the actor), and the charts page's response speed against qualification and booking."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from sidecar.engine import patterns
from sidecar.ingest import apply_snapshot
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead
from sidecar.web.app import create_app
from sidecar.web.auth import parse_users
from sidecar.web.dashboard import charts, rules
from sidecar.web.visibility import visibility_routers
from tests.pattern_support import feed
from tests.support import add_team, apply_policy, call, context, ny, policy_raw, snapshot

USERS = "vera:viewer:viewer-token-123456,max:manager:manager-token-123456"
VIEWER, MANAGER = ({"Authorization": f"Bearer {token}"} for token in ("viewer-token-123456", "manager-token-123456"))


def _held(sessions: sessionmaker[Session]) -> TestClient:
    """Three leads flagged PEP at Tue 08:00: all wait in the compliance queue; the page is read Wed 09:00."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    with transaction(sessions) as session:
        for crm_id in ("00QA", "00QB", "00QC"):
            applied = apply_snapshot(session, ctx.book, snapshot(crm_id, at=ny(24, 8), flags=frozenset({"pep"})))
            patterns.on_applied(session, ctx, applied, ny(24, 8).astimezone(UTC))
    now = ny(25, 9).astimezone(UTC)
    return TestClient(create_app(sessions, visibility_routers(sessions, ctx, parse_users(USERS), "k", lambda: now)))


def _login(client: TestClient, token: str) -> None:
    page = client.get("/dashboard/login")
    nonce = page.text.split('name="nonce" value="')[1].split('"')[0]
    assert client.post("/dashboard/login", data={"nonce": nonce, "token": token}).url.path == "/dashboard/"


def _decisions(sessions: sessionmaker[Session]) -> list[tuple[str, str, str, str]]:
    with transaction(sessions) as session:
        rows = session.execute(select(Lead.crm_id, AuditRow.kind, AuditRow.actor, AuditRow.details).join(
            Lead, Lead.id == AuditRow.lead_id).where(AuditRow.pattern == "compliance", AuditRow.action == "update")
            .order_by(AuditRow.id)).all()
    return [(crm_id, kind, actor, details["reason"]) for crm_id, kind, actor, details in rows]


def test_compliance_decisions_over_the_api_need_a_manager_and_a_reason(sessions: sessionmaker[Session]) -> None:
    client = _held(sessions)
    (compliance,) = [q for q in client.get("/api/queues", headers=VIEWER).json()["queues"] if q["name"] == "compliance"]
    assert [(item["crm_id"], item["waiting_s"]) for item in compliance["items"]] == [
        ("00QA", 25 * 3600), ("00QB", 25 * 3600), ("00QC", 25 * 3600)]  # held Tue 08:00, read Wed 09:00
    url = "/api/leads/salesforce/00QA/compliance/clear"
    assert client.post(url, json={"reason": "screened"}).status_code == 401
    assert client.post(url, json={"reason": "screened"}, headers=VIEWER).status_code == 403
    assert client.post(url, json={"reason": ""}, headers=MANAGER).status_code == 422
    cleared = client.post(url, json={"reason": "screened"}, headers=MANAGER)
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["kind"], cleared.json()["crm_status"], cleared.json()["time_in_review_s"]) == (
        "compliance_cleared", "Open - Not Contacted", 25 * 3600)
    again = client.post(url, json={"reason": "screened"}, headers=MANAGER)
    assert again.status_code == 409 and "not on compliance hold" in again.json()["detail"]
    assert client.post("/api/leads/salesforce/00QX/compliance/clear", json={"reason": "x"},
                       headers=MANAGER).status_code == 404
    assert client.post("/api/leads/salesforce/00QB/compliance/approve", json={"reason": "x"},
                       headers=MANAGER).status_code == 422
    assert _decisions(sessions) == [("00QA", "compliance_cleared", "api:max", "screened")]
    assert "/api/leads/{crm}/{crm_id}/compliance/{decision}" in client.get("/openapi.json").json()["paths"]


def test_a_manager_decides_a_hold_on_the_lead_page_and_a_viewer_cannot(sessions: sessionmaker[Session]) -> None:
    client = _held(sessions)
    _login(client, "viewer-token-123456")
    queue = client.get("/dashboard/").text.split('id="queue-compliance"')[1].split("</table>")[0]
    assert queue.count("Aisha Al-Mansoori") == 3 and queue.count('<td class="num">25 h</td>') == 3  # aging
    page = client.get("/dashboard/leads/salesforce/00QB")
    assert 'id="compliance"' not in page.text and "decide a compliance hold" in page.text
    refused = client.post("/dashboard/leads/salesforce/00QB/compliance", data={"decision": "reject", "reason": "x"},
                          follow_redirects=False)
    assert refused.status_code == 403
    client.cookies.clear()
    _login(client, "manager-token-123456")
    page = client.get("/dashboard/leads/salesforce/00QB")
    assert 'id="compliance-clear"' in page.text and 'id="compliance-reject"' in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    forged = client.post("/dashboard/leads/salesforce/00QB/compliance",
                         data={"csrf": "wrong", "decision": "reject", "reason": "PEP"}, follow_redirects=False)
    assert forged.status_code == 403 and _decisions(sessions) == []
    no_reason = client.post("/dashboard/leads/salesforce/00QB/compliance",
                            data={"csrf": csrf.group(1), "decision": "reject", "reason": " "})
    assert "give the reason" in no_reason.text and _decisions(sessions) == []
    done = client.post("/dashboard/leads/salesforce/00QB/compliance",
                       data={"csrf": csrf.group(1), "decision": "reject", "reason": "PEP match confirmed"})
    assert done.status_code == 200 and "rejected: disqualified" in done.text
    assert 'id="compliance"' not in done.text  # decided: nothing left to decide on this lead
    assert _decisions(sessions) == [("00QB", "compliance_rejected", "dashboard:max", "PEP match confirmed")]
    with transaction(sessions) as session:
        assert session.scalars(select(Lead.state).where(Lead.crm_id == "00QB")).one() == "DISQUALIFIED_COMPLIANCE"


def test_response_speed_against_qualification_and_booking_chart(sessions: sessionmaker[Session]) -> None:
    """Tue 08:00, three leads: A called 08:30 and qualified, B called 10:00 (1-4 h) and not qualified,
    C never answered. By hand: within 1 h 1 of 1 qualified; 1-4 h 0 of 1; no response 0 of 1."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    arrivals = {crm_id: snapshot(crm_id, at=ny(24, 8)) for crm_id in ("A", "B", "C")}
    for snap in arrivals.values():
        feed(sessions, ctx, snap)
    feed(sessions, ctx, replace(arrivals["A"], crm_modified_at=ny(24, 8, 30), activities=(call("T-A", ny(24, 8, 30)),)))
    feed(sessions, ctx, replace(arrivals["A"], crm_modified_at=ny(24, 9), crm_status="Qualified",
                                status_changed_at=ny(24, 9), activities=(call("T-A", ny(24, 8, 30)),)))
    feed(sessions, ctx, replace(arrivals["B"], crm_modified_at=ny(24, 10), activities=(call("T-B", ny(24, 10)),)))
    with transaction(sessions) as session:
        chart = str(charts.speed_vs_outcome(session, ny(25, 9).astimezone(UTC)))
    assert "Response speed vs qualification and booking" in chart
    shown = re.findall(r">([^<>]+: (?:qualified|booked))</text>.*?>(\d+%|–)  (\d+ of \d+ leads)</text>", chart)
    assert shown == [("within 1 h: qualified", "100%", "1 of 1 leads"), ("within 1 h: booked", "0%", "0 of 1 leads"),
                     ("1-4 h: qualified", "0%", "0 of 1 leads"), ("1-4 h: booked", "0%", "0 of 1 leads"),
                     ("no response: qualified", "0%", "0 of 1 leads"), ("no response: booked", "0%", "0 of 1 leads")]


def test_rules_page_shows_each_version_and_each_rule_with_what_changed(sessions: sessionmaker[Session]) -> None:
    first = apply_policy(sessions, policy_raw(), ny(1, 0))
    raw = policy_raw()
    raw["windows"][-1]["window"] = "2h"  # new.test
    raw["ladder"][0]["at"] = 0.9  # sla.imminent
    second = apply_policy(sessions, raw, ny(2, 0))
    ctx = context()
    with transaction(sessions) as session:
        versions = rules.versions(session, ctx.book)
        views = {view.id: view for view in rules.rule_views(session, ctx.book)}
    assert [(v.version, v.changes) for v in versions] == [
        (first, []), (second, ["new.test changed: window: 1h -> 2h", "sla.imminent changed: at: 0.8 -> 0.9"])]
    assert views["new.test"].history == [(first, "added"), (second, "changed: window: 1h -> 2h")]
    assert views["sla.breach"].history == [(first, "added")]
    client = TestClient(create_app(sessions, visibility_routers(sessions, ctx, parse_users(USERS), "k",
                                                                lambda: ny(2, 9).astimezone(UTC))))
    _login(client, "viewer-token-123456")
    page = client.get("/dashboard/rules").text
    assert f"{second}: changed: window: 1h -&gt; 2h" in page and "sla.imminent changed: at: 0.8 -&gt; 0.9" in page
    api = client.get("/api/policy/versions", headers=VIEWER).json()["versions"]
    assert [v["changes"] for v in api] == [v.changes for v in versions]
