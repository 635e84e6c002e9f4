"""Churn risk (seed 000 pattern 5): signals by API or CRM flag tag, notify, task, and pause the account."""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from sidecar.domain import Persona
from sidecar.engine.patterns.churn import account_key
from sidecar.engine.patterns.compliance_decisions import decide
from sidecar.engine.patterns.shared import EngineContext
from sidecar.outbox import Ports, dispatch
from sidecar.ports import LeadUpdate, TaskRequest
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead
from sidecar.web.app import create_app
from sidecar.web.signals import signals_router
from tests.pattern_support import feed
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, call, context, ny, policy_raw, snapshot

AUTH = {"Authorization": "Bearer s1gnals"}
SIGNAL = {"signal_id": "mixpanel-771", "type": "usage_drop", "crm": "salesforce", "lead_id": "00QCUST",
          "occurred_at": "2026-11-24T14:55:00Z"}


def org(sessions: sessionmaker[Session]) -> EngineContext:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    feed(sessions, ctx, snapshot("00QCUST", at=ny(24, 8), owner="r1", company="Emirates Group, Inc.",
                                 status="Working - Contacted"))
    feed(sessions, ctx, snapshot("00QNEW1", at=ny(24, 9), owner="r2", company="Emirates Group"))
    feed(sessions, ctx, snapshot("00QOTHER", at=ny(24, 9), owner="r3", company="Etihad Airways"))
    return ctx


def client(sessions: sessionmaker[Session], ctx: EngineContext, at: datetime) -> TestClient:
    return TestClient(create_app(sessions, [signals_router(sessions, ctx, "s1gnals", clock=lambda: at)]))


def clock_of(session: Session, crm_id: str, kind: str = "sla") -> Clock:
    """The lead's open clock of `kind` (a NEW lead has an SLA and a stuck-lead clock side by side)."""
    lead = session.scalars(select(Lead).where(Lead.crm_id == crm_id)).one()
    return session.scalars(select(Clock).where(Clock.lead_id == lead.id, Clock.kind == kind,
                                               Clock.status != "closed")).one()


def test_account_names_are_normalised() -> None:
    assert account_key("Emirates Group, Inc.") == account_key("EMIRATES  group") == "emirates group"
    assert account_key("") is None and account_key("Acme GmbH") == "acme"


def test_a_signal_tags_notifies_tasks_and_pauses_the_account_until_the_retention_touch(
        sessions: sessionmaker[Session]) -> None:
    ctx = org(sessions)
    at = ny(24, 10).astimezone(UTC)
    api = client(sessions, ctx, at)
    first = api.post("/api/signals", headers=AUTH, json=SIGNAL)
    assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
    again = api.post("/api/signals", headers=AUTH, json=SIGNAL)
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True}
    with transaction(sessions) as session:
        [row] = session.scalars(select(AuditRow).where(AuditRow.kind == "churn_risk")).all()
        assert (row.pattern, row.action, row.rule_id) == ("churn", "tag", "churn.risk")
        assert row.details["signal_type"] == "usage_drop" and row.details["source"] == "api"
        assert clock_of(session, "00QNEW1").status == "paused"
        assert clock_of(session, "00QNEW1").paused_by is not None
        # The stuck-lead clock waits too: a lead the sidecar keeps waiting is not stuck.
        stuck = clock_of(session, "00QNEW1", "stuck")
        assert (stuck.status, stuck.paused_by) == ("paused", clock_of(session, "00QNEW1").paused_by)
        assert clock_of(session, "00QOTHER").status == "open"  # another account
        assert clock_of(session, "00QCUST").status == "open"  # not a new lead: not paused
    notifier, writer = FakeNotifier(), FakeWriter()
    dispatch(sessions, Ports(notifier, {"salesforce": writer}), at)
    [tag] = [e for e in writer.effects.values() if isinstance(e, LeadUpdate)]
    assert (tag.lead.crm_id, tag.add_tags) == ("00QCUST", ("churn-risk-elevated",))
    # The retention task (the new leads' first-response tasks are the other tasks written)
    [task] = [e for k, e in writer.effects.items() if isinstance(e, TaskRequest) and k.startswith("signal:")]
    assert sorted(e.lead.crm_id for k, e in writer.effects.items() if isinstance(e, TaskRequest)
                  and not k.startswith("signal:")) == ["00QNEW1", "00QOTHER"]
    assert (task.owner_id, task.due_at) == ("r1", ny(26, 10))  # 2 business days of 10 h from Tue 10:00
    told = {(n.kind, n.persona): n for n in notifier.sent.values()}
    assert told[("churn_risk", Persona.OWNER)].recipient_email == "r1@example.com"
    assert told[("churn_risk", Persona.CUSTOMER_SUCCESS)].channel == "#customer-success"
    paused = told[("churn_outreach_paused", Persona.OWNER)]
    assert paused.recipient_email == "r2@example.com" and "churn risk" in paused.extra["reason"]

    # A new lead of the same account arriving meanwhile waits too.
    feed(sessions, ctx, snapshot("00QNEW2", at=ny(24, 11), owner="r3", company="EMIRATES GROUP"))
    with transaction(sessions) as session:
        assert clock_of(session, "00QNEW2").status == "paused"

    # The retention call on the signalled lead completes the touchpoint: the account's clocks resume.
    cust = snapshot("00QCUST", at=ny(24, 8), owner="r1", company="Emirates Group, Inc.", status="Working - Contacted")
    feed(sessions, ctx, replace(cust, crm_modified_at=ny(24, 13), activities=(call("00TCALL", ny(24, 13)),)))
    with transaction(sessions) as session:
        for crm_id in ("00QNEW1", "00QNEW2"):
            resumed = clock_of(session, crm_id)
            assert (resumed.status, resumed.paused_by) == ("open", None)
            assert resumed.running_since == ny(24, 13)
            stuck = clock_of(session, crm_id, "stuck")
            assert (stuck.status, stuck.paused_by, stuck.running_since) == ("open", None, ny(24, 13))
        [done] = session.scalars(select(AuditRow).where(AuditRow.kind == "churn_outreach_resumed")).all()
        assert done.details["resumed_leads"] == ["00QNEW1", "00QNEW2"]
    feed(sessions, ctx, snapshot("00QNEW3", at=ny(24, 14), owner="r3", company="Emirates Group"))
    with transaction(sessions) as session:
        assert clock_of(session, "00QNEW3").status == "open"  # the hold is over


def test_the_signals_api_refuses_bad_callers_and_bad_bodies(sessions: sessionmaker[Session]) -> None:
    ctx = org(sessions)
    api = client(sessions, ctx, ny(24, 10).astimezone(UTC))
    assert api.post("/api/signals", json=SIGNAL).status_code == 401
    assert api.post("/api/signals", headers={"Authorization": "Bearer nope"}, json=SIGNAL).status_code == 403
    # Auth comes first: a wrong token with a broken body is still 403, not a parse error.
    assert api.post("/api/signals", headers={"Authorization": "Bearer nope"}, content=b"{").status_code == 403
    assert api.post("/api/signals", headers=AUTH, content=b"{not json").status_code == 400
    unknown = api.post("/api/signals", headers=AUTH, json={**SIGNAL, "type": "weather"})
    assert unknown.status_code == 400 and "usage_drop" in unknown.json()["detail"]
    assert api.post("/api/signals", headers=AUTH, json={**SIGNAL, "lead_id": "00QNOPE"}).status_code == 404
    assert api.post("/api/signals", headers=AUTH, json={"signal_id": "x", "type": "usage_drop"}).status_code == 400
    by_account = api.post("/api/signals", headers=AUTH, json={"signal_id": "zendesk-9", "type": "ticket_spike",
                                                              "account": "emirates group inc"})
    assert by_account.status_code == 200 and by_account.json()["lead_id"] == "00QNEW1"  # the newest lead
    with transaction(sessions) as session:
        assert len(session.scalars(select(AuditRow).where(AuditRow.kind == "churn_risk")).all()) == 1
        assert clock_of(session, "00QNEW1").status == "open"  # the signalled lead itself is being worked


def test_a_paused_lead_back_from_on_hold_waits_for_the_touchpoint_still(sessions: sessionmaker[Session]) -> None:
    ctx = org(sessions)
    client(sessions, ctx, ny(24, 10).astimezone(UTC)).post("/api/signals", headers=AUTH, json=SIGNAL)
    new1 = snapshot("00QNEW1", at=ny(24, 9), owner="r2", company="Emirates Group")
    feed(sessions, ctx, replace(new1, crm_modified_at=ny(24, 11), crm_status="On Hold", status_changed_at=ny(24, 11)))
    feed(sessions, ctx, replace(new1, crm_modified_at=ny(24, 12), status_changed_at=ny(24, 12)))  # NEW again
    with transaction(sessions) as session:
        assert (clock_of(session, "00QNEW1").status, clock_of(session, "00QNEW1").paused_by) == ("paused", "churn:1")
    cust = snapshot("00QCUST", at=ny(24, 8), owner="r1", company="Emirates Group, Inc.", status="Working - Contacted")
    feed(sessions, ctx, replace(cust, crm_modified_at=ny(24, 13), activities=(call("00TCALL", ny(24, 13)),)))
    with transaction(sessions) as session:
        assert (clock_of(session, "00QNEW1").status, clock_of(session, "00QNEW1").running_since) == ("open", ny(24, 13))


def test_a_lead_cleared_by_compliance_while_its_account_is_held_waits_too(sessions: sessionmaker[Session]) -> None:
    ctx = org(sessions)
    client(sessions, ctx, ny(24, 10).astimezone(UTC)).post("/api/signals", headers=AUTH, json=SIGNAL)
    feed(sessions, ctx, snapshot("00QFLAG", at=ny(24, 11), owner="r3", company="Emirates Group",
                                 flags=frozenset({"sanctions_match"})))
    with transaction(sessions) as session:
        assert clock_of(session, "00QFLAG").paused_by is None  # held by compliance, not by the churn hold
        decide(session, ctx, "salesforce", "00QFLAG", "clear", "compliance@example.com", "false positive",
               ny(24, 12).astimezone(UTC))
    with transaction(sessions) as session:
        fresh = clock_of(session, "00QFLAG")  # the full window from the clear, paused for the account
        assert (fresh.status, fresh.paused_by, fresh.started_at) == ("paused", "churn:1", ny(24, 12))


def test_the_hold_ends_when_the_signalled_lead_is_closed(sessions: sessionmaker[Session]) -> None:
    ctx = org(sessions)
    client(sessions, ctx, ny(24, 10).astimezone(UTC)).post("/api/signals", headers=AUTH, json=SIGNAL)
    cust = snapshot("00QCUST", at=ny(24, 8), owner="r1", company="Emirates Group, Inc.",
                    crm_modified_at=ny(24, 12), status="Closed - Not Converted", status_changed_at=ny(24, 12))
    feed(sessions, ctx, cust)
    with transaction(sessions) as session:
        assert clock_of(session, "00QNEW1").status == "open"
        [done] = session.scalars(select(AuditRow).where(AuditRow.kind == "churn_outreach_resumed")).all()
        assert done.details["released_by"] == "lead closed:CLOSED"


def test_a_churn_flag_in_the_crm_is_a_signal_once(sessions: sessionmaker[Session]) -> None:
    ctx = org(sessions)
    flagged = snapshot("00QCUST", at=ny(24, 8), owner="r1", company="Emirates Group, Inc.",
                       status="Working - Contacted", crm_modified_at=ny(24, 12), flags=frozenset({"ticket_spike"}))
    feed(sessions, ctx, flagged)
    feed(sessions, ctx, replace(flagged, crm_modified_at=ny(24, 12, 5), score=30.0))  # flag still there
    with transaction(sessions) as session:
        [row] = session.scalars(select(AuditRow).where(AuditRow.kind == "churn_risk")).all()
        assert (row.details["signal_type"], row.details["source"]) == ("ticket_spike", "crm_flag")
        assert clock_of(session, "00QNEW1").status == "paused"
