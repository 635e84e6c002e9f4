"""Initial assignment (seed 002): rules by intent/source/market pick a team, round robin picks a rep."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.directory import apply_directory, parse_directory
from sidecar.domain import Intent
from sidecar.engine.assignment import (
    AssignmentPolicy,
    AssignmentRule,
    assign_new_lead,
    assign_on_arrival,
    assign_pending,
    plan_assignment,
    record_assignment,
)
from sidecar.engine.patterns.keys import first_response_key
from sidecar.engine.patterns.shared import EngineContext
from sidecar.policy.model import Policy
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead, OutboxRow
from tests.support import apply_policy, context, ingest, ny, policy_raw, snapshot

RULES = [
    AssignmentRule.model_validate({"id": "assign.paid.high", "team": "inbound",
                                   "when": {"intent": "high", "source": "paid_social", "market": "US-East"}}),
    AssignmentRule.model_validate({"id": "assign.us.default", "team": "content", "when": {"market": ["US-East"]}}),
]
MORNING = ny(24, 10).astimezone(UTC)  # Tuesday 10:00 in New York: US-East is open


def _rep(rep_id: str, team: str, **extra: Any) -> dict[str, Any]:
    return {"id": rep_id, "crm": "salesforce", "name": f"Rep {rep_id}", "email": f"{rep_id}@example.com",
            "team": team, **extra}


def setup(sessions: sessionmaker[Session], inbound: dict[str, Any] | None = None) -> tuple[EngineContext, str]:
    ctx = context()
    version = apply_policy(sessions, policy_raw(), ny(1, 0))
    directory = parse_directory({
        "teams": [{"id": "inbound", "name": "Inbound", "market": "US-East", "ops_queue": "00GINBOUND"},
                  {"id": "content", "name": "Content", "market": "US-East"}],
        "reps": [_rep("005A1", "inbound", **(inbound or {})), _rep("005A2", "inbound"), _rep("005A3", "inbound"),
                 _rep("005C1", "content"), _rep("005C2", "content")]})
    with transaction(sessions) as session:
        apply_directory(session, directory, ctx.book.get(session, version))
    return ctx, version


def arrive(sessions: sessionmaker[Session], ctx: EngineContext, crm_id: str, *, owner: str | None = None,
           source: str = "paid_social", intent: Intent = Intent.HIGH, at: datetime = MORNING) -> None:
    ingest(sessions, ctx, snapshot(crm_id, at=at, owner=owner, market="US-East", source=source, intent=intent))


def decide(sessions: sessionmaker[Session], ctx: EngineContext, version: str, crm_id: str,
           rules: list[AssignmentRule] = RULES, at: datetime = MORNING) -> tuple[str | None, str | None, str] | None:
    """(rep id, rule id, reason) of assign_new_lead, or None when the lead is left alone."""
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == crm_id)).one()
        result = assign_new_lead(session, ctx.book, version, ctx.book.get(session, version), lead, rules, at)
    return None if result is None else (result.rep.id if result.rep else None, result.rule_id, result.reason)


def test_high_intent_paid_social_us_lead_goes_to_the_rules_team_in_turn(sessions: sessionmaker[Session]) -> None:
    ctx, version = setup(sessions)
    arrive(sessions, ctx, "00QPAID")
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == "00QPAID")).one()
        row = assign_on_arrival(session, ctx, lead, MORNING, RULES)
        assert row is not None
        effects = {r.action: r for r in session.scalars(select(OutboxRow).where(OutboxRow.audit_id == row.id))}
        # the arrival found nobody to give a task to; the assignment hands the first-response task over
        first = session.scalars(select(AuditRow).where(AuditRow.step_key == first_response_key(lead.id))).one()
        effects.update({r.action: r for r in session.scalars(select(OutboxRow).where(OutboxRow.audit_id == first.id))})
    assert (row.kind, row.rule_id, row.policy_version) == ("lead_assigned", "assign.paid.high", version)
    assert row.details["to_owner"] == "005A1" and row.details["team"] == "inbound"
    assert effects["change_owner"].payload["to_owner_id"] == "005A1"
    assert effects["change_owner"].payload["from_owner_id"] is None
    # the first-response task waits for the owner change and is due at the 1h paid-social deadline
    assert effects["create_task"].depends_on == effects["change_owner"].id
    assert effects["create_task"].payload["due_at"].startswith("2026-11-24T16:00")
    assert effects["create_task"].payload["owner_id"] == "005A1"
    # the shadow owner moved at once: the lead is not decided again, and the next lead is next in turn
    assert decide(sessions, ctx, version, "00QPAID") is None
    arrive(sessions, ctx, "00QPAID2")
    assert decide(sessions, ctx, version, "00QPAID2")[0] == "005A2"  # type: ignore[index]


def test_rules_are_evaluated_in_order_first_match_wins(sessions: sessionmaker[Session]) -> None:
    ctx, version = setup(sessions)
    arrive(sessions, ctx, "00QHIGH")
    arrive(sessions, ctx, "00QWEB", source="webinar", intent=Intent.MID)
    arrive(sessions, ctx, "00QFAR", source="webinar", intent=Intent.MID)
    assert decide(sessions, ctx, version, "00QHIGH")[:2] == ("005A1", "assign.paid.high")  # type: ignore[index]
    assert decide(sessions, ctx, version, "00QWEB")[:2] == ("005C1", "assign.us.default")  # type: ignore[index]
    # the catch-all first: it now takes the high-intent lead too
    assert decide(sessions, ctx, version, "00QHIGH", rules=RULES[::-1])[1] == "assign.us.default"  # type: ignore[index]
    with transaction(sessions) as session:
        session.scalars(select(Lead).where(Lead.crm_id == "00QFAR")).one().market = "DACH"
    assert decide(sessions, ctx, version, "00QFAR") == (
        None, None, "no assignment rule matches intent=mid, source=webinar, market=DACH")


def test_queue_owned_salesforce_lead_is_assigned_from_the_queue(sessions: sessionmaker[Session]) -> None:
    ctx, version = setup(sessions)
    arrive(sessions, ctx, "00QQUEUE", owner="00G5e000000WEBQ")
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == "00QQUEUE")).one()
        plan = plan_assignment(session, ctx, version, ctx.book.get(session, version), lead, MORNING, RULES)
    assert plan is not None and plan.owner_change is not None
    assert (plan.owner_change.from_owner_id, plan.owner_change.to_owner_id) == ("00G5e000000WEBQ", "005A1")


def test_a_lead_a_person_owns_is_left_alone(sessions: sessionmaker[Session]) -> None:
    ctx, version = setup(sessions)
    arrive(sessions, ctx, "00QOWNED", owner="005C2")
    assert decide(sessions, ctx, version, "00QOWNED") is None
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == "00QOWNED")).one()
        assert plan_assignment(session, ctx, version, ctx.book.get(session, version), lead, MORNING, RULES) is None
        assert session.scalars(select(AuditRow).where(AuditRow.kind.like("lead_%"))).all() == []


def test_no_available_rep_gives_none_with_the_reason_and_a_later_retry_assigns(
        sessions: sessionmaker[Session]) -> None:
    ctx, version = setup(sessions, inbound={"pto": [{"from": "2026-11-24", "to": "2026-11-24"}]})
    night = ny(23, 22).astimezone(UTC)  # Monday 22:00 in New York: the team is off shift
    arrive(sessions, ctx, "00QNIGHT", at=night)
    assert decide(sessions, ctx, version, "00QNIGHT", at=night) == (
        None, "assign.paid.high", "all 3 reps of Inbound unavailable: 3 outside hours")
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == "00QNIGHT")).one()
        plan = plan_assignment(session, ctx, version, ctx.book.get(session, version), lead, night, RULES)
        assert plan is not None and plan.owner_change is None and plan.kind == "lead_unassigned"
        record_assignment(session, plan, lead, version, night)
        record_assignment(session, plan, lead, version, night)  # the same decision twice is one row
        assert len(session.scalars(select(AuditRow).where(AuditRow.kind == "lead_unassigned")).all()) == 1
    # next morning 005A1 is on PTO: the retry skips them and says so
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == "00QNIGHT")).one()
        plan = plan_assignment(session, ctx, version, ctx.book.get(session, version), lead, MORNING, RULES)
        assert plan is not None and plan.assignment.rep is not None
        assert plan.assignment.rep.id == "005A2" and plan.assignment.excluded == {"005A1": "on PTO"}


def test_the_same_snapshot_is_assigned_once(sessions: sessionmaker[Session]) -> None:
    ctx, version = setup(sessions)
    arrive(sessions, ctx, "00QONCE")
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm_id == "00QONCE")).one()
        policy = ctx.book.get(session, version)
        plan = plan_assignment(session, ctx, version, policy, lead, MORNING, RULES)
        assert plan is not None
        record_assignment(session, plan, lead, version, MORNING)
        assert plan_assignment(session, ctx, version, policy, lead, MORNING, RULES) is None
        assert len(session.scalars(select(OutboxRow).where(OutboxRow.action == "change_owner")).all()) == 1


def test_round_robin_spreads_30_new_leads_within_one(sessions: sessionmaker[Session]) -> None:
    ctx, version = setup(sessions)
    for i in range(30):
        arrive(sessions, ctx, f"00QRR{i:02d}")
    with transaction(sessions) as session:
        leads = list(session.scalars(select(Lead).order_by(Lead.id)))
        policy = ctx.book.get(session, version)
        counts: Counter[str] = Counter()
        for lead in leads:
            plan = plan_assignment(session, ctx, version, policy, lead, MORNING, RULES)
            assert plan is not None and plan.assignment.rep is not None
            record_assignment(session, plan, lead, version, MORNING)
            counts[plan.assignment.rep.id] += 1
    assert set(counts) == {"005A1", "005A2", "005A3"}
    assert max(counts.values()) - min(counts.values()) <= 1


def test_assign_pending_retries_waiting_leads_and_leaves_owned_ones(sessions: sessionmaker[Session]) -> None:
    ctx, _ = setup(sessions)
    night = ny(23, 22).astimezone(UTC)
    arrive(sessions, ctx, "00QWAIT", at=night)
    arrive(sessions, ctx, "00QMINE", owner="005C1", at=night)
    with transaction(sessions) as session:
        assert assign_pending(session, ctx, night, rules=RULES) == []  # off shift: audited, not assigned
        # Until policy/model.py carries `assignment`, the active policy has no rules: nothing happens.
        assert assign_pending(session, ctx, MORNING) == []
        rows = assign_pending(session, ctx, MORNING, rules=RULES)
        kinds = sorted(row.kind for row in session.scalars(select(AuditRow).where(AuditRow.kind.like("lead_%"))))
    assert [(row.details["to_owner"], row.rule_id) for row in rows] == [("005A1", "assign.paid.high")]
    assert kinds == ["lead_assigned", "lead_unassigned"]


def test_rules_come_from_the_policy_section_once_the_policy_has_one(sessions: sessionmaker[Session]) -> None:
    """The proposed `Policy.assignment` field, simulated by a subclass: rules=None reads it."""

    class PolicyWithAssignment(Policy):
        assignment: AssignmentPolicy = AssignmentPolicy()

    ctx, version = setup(sessions)
    arrive(sessions, ctx, "00QPOL", source="webinar", intent=Intent.MID)
    with transaction(sessions) as session:
        base = ctx.book.get(session, version).model_dump()
        lead = session.scalars(select(Lead).where(Lead.crm_id == "00QPOL")).one()
        disabled = PolicyWithAssignment.model_validate({**base, "assignment": {"rules": RULES[1:]}})
        assert plan_assignment(session, ctx, version, disabled, lead, MORNING) is None
        enabled = PolicyWithAssignment.model_validate(
            {**base, "assignment": {"enabled": True, "rules": [r.model_dump() for r in RULES]}})
        plan = plan_assignment(session, ctx, version, enabled, lead, MORNING)
    assert plan is not None and plan.assignment.rule_id == "assign.us.default"


def test_leads_nobody_can_take_do_not_crowd_out_newer_ones(sessions: sessionmaker[Session]) -> None:
    ctx, _version = setup(sessions)
    for i in range(5):  # no rule matches these (no market): they stay waiting
        ingest(sessions, ctx, snapshot(f"00QLOST{i}", at=MORNING, owner=None, market=None))
    arrive(sessions, ctx, "00QNEW")
    assigned: list[str] = []
    for _ in range(3):  # each round looks at 3 waiting leads, continuing where the last one stopped
        with transaction(sessions) as session:
            rows = assign_pending(session, ctx, MORNING, limit=3, rules=RULES)
            assigned += [session.get(Lead, row.lead_id).crm_id for row in rows]
    assert assigned == ["00QNEW"]
