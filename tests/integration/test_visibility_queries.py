"""The dashboard's queries, the JSON API and /metrics on a hand-checked morning, on SQLite and PostgreSQL.

Two leads on a 1 h window (08:00-18:00 New York): A arrives 08:00 (warned 08:48, breached 09:00,
reassigned 09:30, warned again 10:18), B arrives 09:00 (warned 09:48, breached 10:00). At 10:00:
"""

from __future__ import annotations

import warnings
from datetime import UTC

from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from sidecar import metrics
from sidecar.engine.evaluator import tick
from sidecar.explain import explain
from sidecar.store.db import transaction
from sidecar.web.app import create_app
from sidecar.web.auth import parse_users
from sidecar.web.dashboard import people, queries, rules
from sidecar.web.visibility import visibility_routers
from tests.support import add_team, apply_policy, context, ingest, ny, policy_raw, snapshot

USERS = "vera:viewer:viewer-token-123456,max:manager:manager-token-123456"


def _morning(sessions: sessionmaker[Session]) -> TestClient:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8)))
    ingest(sessions, ctx, snapshot("00QB", at=ny(24, 9)))
    for hour, minute in ((8, 48), (9, 0), (9, 30), (9, 48), (10, 0)):
        tick(sessions, ctx, ny(24, hour, minute).astimezone(UTC))
    now = ny(24, 10).astimezone(UTC)
    return TestClient(create_app(sessions, visibility_routers(sessions, ctx, parse_users(USERS), "k", lambda: now)))


def test_overview_owners_teams_and_rules(sessions: sessionmaker[Session]) -> None:
    _morning(sessions)
    ctx = context()
    now = ny(24, 10).astimezone(UTC)
    with transaction(sessions) as session:
        view = queries.overview(session, ctx.book, now)
        owners = {row.id: row for row in people.owner_rows(session, ctx.book, now)}
        teams = people.team_rows(session, ctx.book, now)
        fired = {row.id: row.fired for row in rules.rule_views(session, ctx.book)}
    assert view.waiting_first_response == 2
    assert [due.crm_id for due in view.due_next_hour] == ["00QA"]  # its new owner's 80 % at 10:18
    assert [(late.crm_id, late.owner, late.rule_id) for late in view.overdue] == [("00QB", "Rep r1", "sla.reassign")]
    assert dict(view.overdue_by_owner) == {("Rep r1", "Team us"): 1} and dict(view.overdue_by_team) == {"Team us": 1}
    assert view.breaches_today == view.breaches_week == {"market": {"TEST": 2}, "source": {"web_form": 2}}
    assert (view.on_time, view.breached, view.hit_rate) == (0, 2, 0.0)
    assert (view.reassignments, view.reverts) == (1, 0)
    assert view.outbox.get("pending", 0) > 0 and view.outbox.get("dead", 0) == 0
    assert [(q.name, q.items) for q in view.queues] == [("ops review", []), ("compliance", []),
                                                        ("unknown CRM values", [])]
    assert ("sla", "reassign", "sla_breach_auto_reassign", 1) in view.steps
    assert (owners["r1"].tally.overdue, owners["r1"].tally.breached) == (1, 2)
    assert [(t.name, t.reps, t.tally.overdue, t.tally.rate) for t in teams] == [("Team us", 4, 1, 0.0)]
    assert (fired["new.test"], fired["sla.breach"], fired["sla.reassign"]) == (3, 2, 1)


def test_api_revert_by_a_manager_and_metrics(sessions: sessionmaker[Session]) -> None:
    client = _morning(sessions)
    viewer, manager = ({"Authorization": f"Bearer {token}"} for token in ("viewer-token-123456",
                                                                        "manager-token-123456"))
    overdue = client.get("/api/leads", params={"overdue": True}, headers=viewer).json()["leads"]
    assert [lead["crm_id"] for lead in overdue] == ["00QB"]
    assert client.post("/api/leads/salesforce/00QA/revert", json={}, headers=viewer).status_code == 403
    done = client.post("/api/leads/salesforce/00QA/revert", json={"reason": "busy"}, headers=manager)
    assert done.status_code == 200 and done.json()["to_owner"] == "r1"
    again = client.post("/api/leads/salesforce/00QA/revert", json={}, headers=manager)
    assert again.status_code == 409 and "already reverted by api:max" in again.json()["detail"]
    rows = client.get("/api/audit", params={"action": "revert"}, headers=viewer).json()["rows"]
    assert [(row["actor"], row["details"]["reason"]) for row in rows] == [("api:max", "busy")]
    text = client.get("/metrics").text
    assert 'sidecar_steps_fired_total{pattern="sla",action="reassign"} 1' in text
    assert 'sidecar_open_clocks{kind="sla",status="open",state="NEW"} 2' in text
    with transaction(sessions) as session:
        lines = explain(session, context().book, "salesforce", "00QB", ny(24, 10).astimezone(UTC))
        assert metrics.render(session, ny(24, 10).astimezone(UTC)).count("# TYPE") == 12  # with the backlog age
    assert lines[2] == ("  window rule new.test: 1h = 1h 00m of business time; matched state NEW, market TEST, "
                        "source *, intent * (specificity 1, rule 8 in the file)")
    assert "    beat new.default (4h): less specific (0 < 1)" in lines
