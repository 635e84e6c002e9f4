"""The JSON API's roles and filters, /metrics and the empty-state providers, on the scripted morning."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from tests.e2e.visibility_fixture import Morning, serve_morning
from tests.support import parse_exposition

VIEWER, MANAGER = {"Authorization": "Bearer demo-viewer-token"}, {"Authorization": "Bearer demo-manager-token"}


@pytest.fixture(scope="module")
def morning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Morning]:
    yield from serve_morning(tmp_path_factory.mktemp("api"))


def test_tokens_and_roles(morning: Morning) -> None:
    url = morning.url
    assert requests.get(f"{url}/api/leads", timeout=10).status_code == 401
    assert requests.get(f"{url}/api/leads", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"},
                        timeout=10).status_code == 401
    # Refused before the body is looked at: a malformed body from a stranger is still a 401, not a 422.
    assert requests.post(f"{url}/api/leads/salesforce/x/revert", data="{not json", timeout=10).status_code == 401
    aisha = morning.lead_id("Aisha Al-Mansoori")
    refused = requests.post(f"{url}/api/leads/salesforce/{aisha}/revert", json={"reason": "no"}, headers=VIEWER,
                            timeout=10)
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    schema = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert {"/api/leads", "/api/clocks", "/api/audit", "/api/queues", "/api/outcomes", "/api/pto",
            "/api/policy/versions", "/api/leads/{crm}/{crm_id}/revert"} <= set(schema["paths"])


def test_filters_audit_paging_and_empty_providers(morning: Morning) -> None:
    url = morning.url
    overdue = requests.get(f"{url}/api/leads", params={"overdue": "true"}, headers=VIEWER, timeout=10).json()
    assert [lead["name"] for lead in overdue["leads"]] == ["Aisha Al-Mansoori"]
    contacted = requests.get(f"{url}/api/leads", params={"state": "CONTACTED"}, headers=VIEWER, timeout=10).json()
    assert [lead["name"] for lead in contacted["leads"]] == ["Jonas Becker"]
    reassigns = requests.get(f"{url}/api/audit", params={"action": "reassign"}, headers=VIEWER, timeout=10).json()
    assert [row["rule_id"] for row in reassigns["rows"]] == ["sla.reassign", "sla.reassign"]
    page2 = requests.get(f"{url}/api/audit", params={"per_page": 4, "page": 2}, headers=VIEWER, timeout=10).json()
    assert [row["id"] for row in page2["rows"]] == [5, 6, 7, 8]
    clocks = requests.get(f"{url}/api/clocks", params={"status": "open"}, headers=VIEWER, timeout=10).json()
    # Each lead has a stuck clock beside its SLA clock; only the SLA clock follows the ladder, so only
    # Aisha's SLA clock is breached (a stuck clock's steps are never a breach).
    assert sorted((c["kind"], c["state"], c["breached"]) for c in clocks["clocks"]) == [
        ("sla", "CONTACTED", False), ("sla", "NEW", True), ("stuck", "CONTACTED", False), ("stuck", "NEW", False)]
    sla = requests.get(f"{url}/api/clocks", params={"status": "open", "kind": "sla"}, headers=VIEWER, timeout=10).json()
    assert sorted((c["state"], c["breached"]) for c in sla["clocks"]) == [("CONTACTED", False), ("NEW", True)]
    queues = requests.get(f"{url}/api/queues", headers=VIEWER, timeout=10).json()["queues"]
    # Aisha has stayed in NEW for 4x her window by 17:00: the stuck pattern put her up for ops review.
    assert [(q["name"], q["items"]) for q in queues] == [
        ("ops review", [{"crm": "salesforce", "crm_id": "00QHp000000000IMAQ", "lead": "Aisha Al-Mansoori",
                         "reason": "stuck in NEW", "since": "2026-11-24T17:00:00Z",
                         "waiting_s": 60.0}]),  # the replay's clock stops at 17:01 (12:01 New York)
        ("compliance", []), ("unknown CRM values", [])]
    assert queues[1]["empty"].startswith("no lead is on compliance hold")
    outcomes = requests.get(f"{url}/api/outcomes", headers=VIEWER, timeout=10).json()
    assert outcomes["outcomes"] == [] and outcomes["empty"].startswith("no outcomes recorded yet")
    versions = requests.get(f"{url}/api/policy/versions", headers=VIEWER, timeout=10).json()["versions"]
    assert [v["label"] for v in versions] == ["2026-Q4 policy"] and versions[0]["active"]


def test_pto_needs_a_manager_and_names_the_problem(morning: Morning) -> None:
    url = morning.url
    body = {"rep_id": "nobody", "from": "2026-12-01", "to": "2026-12-02"}
    assert requests.post(f"{url}/api/pto", json=body, headers=VIEWER, timeout=10).status_code == 403
    unknown = requests.post(f"{url}/api/pto", json=body, headers=MANAGER, timeout=10)
    assert unknown.status_code == 422 and "unknown rep nobody" in unknown.json()["detail"]


def test_metrics_in_prometheus_text(morning: Morning) -> None:
    response = requests.get(f"{morning.url}/metrics", timeout=10)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = set(response.text.splitlines())
    assert {'sidecar_open_clocks{kind="sla",status="open",state="NEW"} 1',
            'sidecar_open_clocks{kind="sla",status="open",state="CONTACTED"} 1',
            'sidecar_steps_fired_total{pattern="sla",action="reassign"} 2',
            'sidecar_steps_fired_total{pattern="sla",action="notify"} 6',
            "sidecar_outbox_dead_letters 0",
            'sidecar_poll_age_seconds{crm="salesforce"} 60'} <= lines
    # The real connector and receiver paths report into the process's meters: API calls and the quota
    # from the emulator's Sforce-Limit-Info, and the Outbound Messages the receiver acknowledged.
    types, samples = parse_exposition(response.text)
    salesforce = frozenset({("crm", "salesforce")})
    emulator = morning.demo.salesforce
    assert emulator is not None and samples["sidecar_crm_api_calls_total"][salesforce] > 0
    assert samples["sidecar_crm_api_quota_limit"][salesforce] == emulator.daily_limit
    assert emulator.daily_limit - emulator.api_calls_used <= samples["sidecar_crm_api_quota_remaining"][salesforce] \
        < emulator.daily_limit
    assert samples["sidecar_webhook_requests_total"][frozenset({("route", "/webhooks/salesforce"),
                                                                ("status", "200")})] > 0
    assert types["sidecar_step_firing_lag_seconds"] == "histogram"  # the demo ticks each virtual minute: no lag
    lag = samples["sidecar_step_firing_lag_seconds_bucket"]
    assert lag[frozenset({("pattern", "sla"), ("le", "1")})] == lag[frozenset({("pattern", "sla"), ("le", "+Inf")})]


def _login(url: str, token: str) -> requests.Session:
    browser = requests.Session()
    browser.trust_env = False
    page = browser.get(f"{url}/dashboard/login", timeout=10)
    nonce = page.text.split('name="nonce" value="')[1].split('"')[0]
    landed = browser.post(f"{url}/dashboard/login", data={"nonce": nonce, "token": token}, timeout=10)
    assert landed.url.endswith("/dashboard/")
    cookie = landed.history[0].headers["set-cookie"]
    assert "sidecar_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    return browser


def test_pages_need_a_login_and_forbid_framing(morning: Morning) -> None:
    anonymous = requests.get(f"{morning.url}/dashboard/rules", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/dashboard/login"
    wrong = _login_fails(morning.url)
    assert "That token is not known" in wrong
    page = _login(morning.url, "demo-viewer-token").get(f"{morning.url}/dashboard/rules", timeout=10)
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "sla.breach" in page.text and "<script" not in page.text


def _login_fails(url: str) -> str:
    browser = requests.Session()
    page = browser.get(f"{url}/dashboard/login", timeout=10)
    nonce = page.text.split('name="nonce" value="')[1].split('"')[0]
    return browser.post(f"{url}/dashboard/login", data={"nonce": nonce, "token": "not-a-user-token"}, timeout=10).text


def test_a_manager_snoozes_a_pending_warning_once(morning: Morning) -> None:
    from sqlalchemy import select

    from sidecar.store.db import transaction
    from sidecar.store.models import AuditRow, Clock, Lead

    jonas = morning.lead_id("Jonas Becker")
    page = f"{morning.url}/dashboard/leads/salesforce/{jonas}"
    with transaction(morning.demo.sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == jonas)).one()
        # The SLA clock: a stuck clock runs beside it, and the snooze moves the ladder's pending warning.
        before = session.scalars(select(Clock).where(Clock.lead_id == lead.id, Clock.kind == "sla",
                                                     Clock.status == "open")).one()
        due = before.next_due_at
    manager = _login(morning.url, "demo-manager-token")
    html = manager.get(page, timeout=10).text
    assert 'id="snooze"' in html and "Snooze sla.imminent 15 min" in html
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    done = manager.post(f"{page}/snooze", data={"csrf": csrf}, timeout=10)
    assert "snoozed: the next step moves to" in done.text and 'id="snooze"' not in done.text
    with transaction(morning.demo.sessions) as session:
        clock = session.get(Clock, before.id)
        assert clock is not None and due is not None and clock.next_due_at == due + timedelta(minutes=15)
        row = session.scalars(select(AuditRow).where(AuditRow.kind == "notification_snoozed")).one()
        assert (row.actor, row.rule_id, row.details["via"]) == ("dashboard:manager", "sla.imminent", "dashboard")
    again = manager.post(f"{page}/snooze", data={"csrf": csrf}, timeout=10)
    assert "nothing to snooze" in again.text


def test_rules_count_clocks_for_windows_and_steps_for_the_ladder(morning: Morning) -> None:
    from sidecar.store.db import transaction
    from sidecar.web.dashboard.rules import rule_views

    with transaction(morning.demo.sessions) as session:
        views = {view.id: view for view in rule_views(session, morning.demo.runtime.ctx.book)}
    # Aisha: three clocks under new.high_intent (two reassignments); Jonas: new.default twice (his
    # call at 08:40 restarts the NEW clock), then contacted.default.
    fired = (views["new.high_intent"].fired, views["new.default"].fired, views["contacted.default"].fired)
    assert fired == (3, 2, 1)
    assert (views["sla.imminent"].fired, views["sla.breach"].fired, views["sla.reassign"].fired) == (3, 3, 2)
    assert views["sla.breach"].history == [(views["sla.breach"].history[0][0], "added")]
    assert views["sla.breach"].section == "ladder" and "notify manager" in views["sla.breach"].purpose
