"""Initial assignment (seed 002): a lead nobody owns goes to a team by rule, then to a rep in turn.

Rules are data, evaluated in order, first match wins: `{id, when: {intent, source, market}, team}`.
Within the team the choice is routing's round robin among reps that `routing.availability` says
can take a lead now, so assignment and reassignment share one definition of "available" and one
turn pointer per team. Deciding writes nothing but that pointer; `record_assignment` writes the
audit row and the outbox effects in the caller's transaction (decide, then do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sidecar import outbox, review_queue
from sidecar.audit import Pattern, StepAction
from sidecar.domain import TERMINAL_STATES, Intent
from sidecar.engine import clocks
from sidecar.engine.ownership import SALESFORCE_QUEUE_PREFIX, needs_owner, queue_ids
from sidecar.engine.patterns import first_response, keys
from sidecar.engine.patterns.shared import EngineContext, create_task, lead_context, record_step
from sidecar.engine.policies import PolicyBook
from sidecar.engine.routing import availability, next_in_turn, summarize, team_reps
from sidecar.policy.model import AssignmentPolicy, AssignmentRule, Policy
from sidecar.ports import OwnerChange, TaskRequest
from sidecar.store.models import AuditRow, Lead, OutboxRow, Rep, RoutingPointer, Team

ASSIGN_CURSOR = "__assignment__"  # the RoutingPointer row that remembers where the last round stopped


def configured(policy: Policy) -> AssignmentPolicy:
    """The policy's `assignment` section (disabled unless the admin turns it on)."""
    return policy.assignment


@dataclass
class Assignment:
    rep: Rep | None  # None: nobody could be chosen, `reason` says why
    rule_id: str | None
    team_id: str | None
    reason: str
    excluded: dict[str, str] = field(default_factory=dict)  # rep id -> why not


def assign_new_lead(session: Session, book: PolicyBook, version: str, policy: Policy, lead: Lead,
                    rules: list[AssignmentRule], at: datetime) -> Assignment | None:
    """None when the lead is not ours to assign (a person owns it, or it is closed)."""
    if lead.state in {state.value for state in TERMINAL_STATES} or not needs_owner(lead, queue_ids(session)):
        return None
    if review_queue.on_compliance_hold(session, lead.id):
        return None  # nobody may work it yet; clearing the hold assigns it (engine.patterns.compliance)
    rule = next((rule for rule in rules if rule.when.matches(lead.intent, lead.source, lead.market)), None)
    if rule is None:
        return Assignment(None, None, None, f"no assignment rule matches intent={lead.intent}, "
                                            f"source={lead.source}, market={lead.market}")
    team = session.get(Team, rule.team)
    if team is None:
        return Assignment(None, rule.id, rule.team, f"rule {rule.id} names team {rule.team!r}, which is not "
                                                    "in the directory")
    reps = team_reps(session, team.id, lead.crm)
    if not reps:
        return Assignment(None, rule.id, team.id, f"team {team.name} has no {lead.crm} reps")
    reasons = availability(session, book, version, policy, team, reps, at)
    excluded = {rep_id: why for rep_id, why in reasons.items() if why is not None}
    candidates = [rep for rep in reps if rep.id not in excluded]
    if not candidates:
        return Assignment(None, rule.id, team.id, summarize(team, excluded), excluded)
    chosen = next_in_turn(session, team.id, candidates)
    return Assignment(chosen, rule.id, team.id, f"rule {rule.id} -> team {team.name}, round robin "
                                                f"among {len(candidates)} available", excluded)


@dataclass(frozen=True)
class AssignmentPlan:
    """What one assignment decision writes: an audit row, and for a chosen rep two outbox effects."""

    assignment: Assignment
    kind: str  # audit kind: lead_assigned | lead_unassigned
    step_key: str
    details: dict[str, Any]
    owner_change: OwnerChange | None = None
    task: TaskRequest | None = None  # the first-response task, due when the SLA breaches


def _decision_key(lead: Lead) -> str:
    # Tied to the CRM state the decision saw: re-running on the same snapshot is a no-op, while a
    # lead put back into a queue later (a new snapshot) is assigned again.
    return keys.assignment_key(lead.id, lead.crm_modified_at)


def plan_assignment(session: Session, ctx: EngineContext, version: str, policy: Policy, lead: Lead,
                    at: datetime, rules: list[AssignmentRule] | None = None) -> AssignmentPlan | None:
    """Decide for one lead; None when there is nothing to decide (owned, disabled, already decided)."""
    if rules is None:
        section = configured(policy)
        rules = section.rules if section.enabled else []
    if not rules or _already_decided(session, lead):
        return None
    assignment = assign_new_lead(session, ctx.book, version, policy, lead, rules, at)
    if assignment is None:
        return None
    details: dict[str, Any] = {"from_owner": lead.owner_id, "to_owner": assignment.rep.id if assignment.rep else None,
                               "team": assignment.team_id, "strategy": "round_robin", "reason": assignment.reason,
                               "excluded": assignment.excluded}
    key = _decision_key(lead)
    if assignment.rep is None:
        # Keyed by reason too: the same failure on the same snapshot is audited once, yet a later
        # retry (a rep comes back on shift) is still free to assign.
        unassigned_key = keys.effect_key(key, "none", assignment.reason)[:200]
        return AssignmentPlan(assignment, "lead_unassigned", unassigned_key, details)
    context = lead_context(session, ctx, lead)
    change = OwnerChange(lead=context, from_owner_id=lead.owner_id, to_owner_id=assignment.rep.id,
                         seen_modified_at=lead.crm_modified_at)
    if policy.first_response is not None and policy.first_response.enabled:
        # The first-response pattern writes the task (assign_on_arrival hands it over).
        return AssignmentPlan(assignment, "lead_assigned", key, details, change)
    due = _deadline(session, ctx.book, lead) or at + timedelta(hours=1)
    task = TaskRequest(lead=context, owner_id=assignment.rep.id,
                       subject=f"First response: {lead.name} ({lead.company})",
                       body=(f"New {lead.intent or 'unclear'}-intent lead from {lead.source or 'unknown source'} "
                             f"({lead.market or 'unknown market'}), assigned to you by rule {assignment.rule_id}. "
                             f"Respond before {due:%Y-%m-%d %H:%M} UTC.\n{context.record_url}"),
                       due_at=due, priority="high" if lead.intent == Intent.HIGH else "normal")
    return AssignmentPlan(assignment, "lead_assigned", key, details, change, task)


def record_assignment(session: Session, plan: AssignmentPlan, lead: Lead, version: str, at: datetime) -> AuditRow:
    """Audit the decision and enqueue its effects in one transaction; idempotent by step key."""
    to_owner = plan.owner_change.to_owner_id if plan.owner_change is not None else None
    row = record_step(session, at=at, pattern=Pattern.ASSIGNMENT, action=StepAction.ASSIGN if to_owner else None,
                      to_owner=to_owner, kind=plan.kind, lead=lead, rule_id=plan.assignment.rule_id,
                      policy_version=version, step_key=plan.step_key, details=plan.details)
    if plan.owner_change is not None:
        # The shadow row takes the new owner at once (capacity counts, no second decision); if the
        # CRM refuses the change, the next poll brings the true owner back.
        lead.owner_id, lead.team_id = plan.owner_change.to_owner_id, plan.assignment.team_id
        change = outbox.enqueue(session, key=keys.effect_key(plan.step_key, "owner"), now=at, audit_id=row.id,
                                request=plan.owner_change)
        if plan.task is not None:
            create_task(session, row, plan.task, at, depends_on=change)
    return row


def assign_on_arrival(session: Session, ctx: EngineContext, lead: Lead, at: datetime,
                      rules: list[AssignmentRule] | None = None) -> AuditRow | None:
    """The one call for ingest: plan under the active policy (its rules unless given) and record it."""
    version, policy = ctx.book.active(session)
    plan = plan_assignment(session, ctx, version, policy, lead, at, rules)
    if plan is None:
        return None
    row = record_assignment(session, plan, lead, version, at)
    if plan.owner_change is not None and plan.task is None:
        change = session.scalars(select(OutboxRow).where(
            OutboxRow.idempotency_key == keys.effect_key(plan.step_key, "owner"))).first()
        first_response.hand_over(session, ctx, lead, row, at, depends_on=change)  # the new owner's task
    return row


def assign_pending(session: Session, ctx: EngineContext, at: datetime, limit: int = 200,
                   rules: list[AssignmentRule] | None = None) -> list[AuditRow]:
    """Retry leads still waiting for an owner (e.g. they arrived while the team was off shift)."""
    terminal = [state.value for state in TERMINAL_STATES]
    queues = queue_ids(session)
    owner_is_queue = or_(Lead.owner_id.is_(None), Lead.owner_id.in_(queues),
                         (Lead.crm == "salesforce") & Lead.owner_id.startswith(SALESFORCE_QUEUE_PREFIX))
    waiting = select(Lead).where(Lead.state.not_in(terminal), owner_is_queue).order_by(Lead.id)
    # Visit the waiting leads in turns from a persisted position, so that leads nobody can take
    # (no rule matches, nobody on shift) never crowd newer ones out of the window.
    pointer = session.get(RoutingPointer, ASSIGN_CURSOR) or RoutingPointer(team_id=ASSIGN_CURSOR, last_rep_id="0")
    session.add(pointer)
    leads = list(session.scalars(waiting.where(Lead.id > int(pointer.last_rep_id or 0)).limit(limit)))
    if len(leads) < limit:
        seen = {lead.id for lead in leads}
        leads += [lead for lead in session.scalars(waiting.limit(limit - len(leads))) if lead.id not in seen]
    if leads:
        pointer.last_rep_id = str(leads[-1].id) if len(leads) == limit else "0"
    rows = [assign_on_arrival(session, ctx, lead, at, rules) for lead in leads]
    return [row for row in rows if row is not None and row.kind == "lead_assigned"]


def _already_decided(session: Session, lead: Lead) -> bool:
    """Assigned on this snapshot, or an earlier assignment's owner change has not landed yet."""
    decided = select(AuditRow.id).where(AuditRow.step_key == _decision_key(lead))
    if session.scalars(decided).first() is not None:
        return True
    in_flight = (select(OutboxRow.id).join(AuditRow, AuditRow.id == OutboxRow.audit_id)
                 .where(AuditRow.lead_id == lead.id, AuditRow.kind == "lead_assigned",
                        OutboxRow.action == "change_owner", OutboxRow.status.in_(("pending", "in_flight"))))
    return session.scalars(in_flight).first() is not None


def _deadline(session: Session, book: PolicyBook, lead: Lead) -> datetime | None:
    """When the lead's running SLA clock breaches: the first-response task is due then."""
    clock = clocks.open_clock_of(session, lead.id, clocks.SLA)
    if clock is None or clock.running_since is None:
        return None
    return clocks.breach_at(clock, book, session)
