"""The JSON API's roles and filters, /metrics and the empty-state providers, on the scripted morning."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.e2e.visibility_fixture import Morning, serve_morning

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
    assert sorted((c["state"], c["breached"]) for c in clocks["clocks"]) == [("CONTACTED", False), ("NEW", True)]
    queues = requests.get(f"{url}/api/queues", headers=VIEWER, timeout=10).json()["queues"]
    assert [(q["name"], q["items"]) for q in queues] == [("ops review", []), ("compliance", [])]
    assert queues[0]["empty"].startswith("no review queue yet")
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
