"""High-value lead acceleration (seed 000 pattern 3), event-driven: it reacts to each applied snapshot.

A lead is flagged when it *crosses* into high value (score at or above `min_score`, a strategic tier,
or a deal size at or above `min_deal_size`), at arrival or later, once per crossing: the flag is kept
on the lead (`Lead.high_value_at`) and re-armed only when no criterion holds and the score fell below
`min_score - hysteresis`, so a score that oscillates around the threshold flags once.

On the flag: the owner hears it with elevated-priority context, the manager too; a junior owner's lead
goes to the most senior available rep of the same team (routing rules, audited as a reassignment so
it can be reverted); the regional VP hears about strategic accounts; and every SLA clock started later
for this lead is tightened by `window_factor` (`clocks.tightened`, the one place that does it).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from sidecar.audit import Pattern, StepAction
from sidecar.domain import TERMINAL_STATES, LeadState, Persona, is_canonical
from sidecar.engine import clocks
from sidecar.engine.patterns import first_response, keys
from sidecar.engine.patterns.shared import (
    EngineContext,
    Message,
    change_owner,
    create_task,
    lead_context,
    notify,
    record_step,
    refresh_team,
)
from sidecar.engine.routing import Choice, choose_new_owner
from sidecar.policy.model import HighValueRule, Policy
from sidecar.ports import LeadContext, TaskRequest
from sidecar.store.models import AuditRow, Lead, Rep

if TYPE_CHECKING:
    from sidecar.ingest import Applied

FLAG_KIND = "high_value_flag"  # audit labels; code reads `pattern` and `action`
REARMED_KIND = "high_value_rearmed"


def criteria(rule: HighValueRule, lead: Lead) -> list[str]:
    """Which high-value criteria the lead meets now, in words for the audit and the message."""
    matched = []
    if rule.min_score is not None and lead.score is not None and lead.score >= rule.min_score:
        matched.append(f"score {lead.score:g} >= {rule.min_score:g}")
    if lead.tier is not None and lead.tier in rule.tiers:
        matched.append(f"tier {lead.tier}")
    if rule.min_deal_size is not None and lead.deal_size is not None and lead.deal_size >= rule.min_deal_size:
        matched.append(f"deal size {lead.deal_size:g} >= {rule.min_deal_size:g}")
    return matched


def on_applied(session: Session, ctx: EngineContext, applied: Applied, now: datetime) -> None:
    lead = applied.lead
    if lead is None:  # a merge of a lead never tracked here
        return
    version, policy = ctx.book.active(session)
    rule = policy.high_value
    if rule is None or not is_canonical(lead.state) or LeadState(lead.state) in TERMINAL_STATES:
        return
    if applied.on_compliance_hold(session):
        return  # nobody may work it yet; a snapshot after the clear flags it if it still qualifies
    matched = criteria(rule, lead)
    if lead.high_value_at is None:
        if matched:
            flag(session, ctx, version, policy, rule, lead, matched, now)
        return
    well_below = rule.min_score is None or lead.score is None or lead.score < rule.min_score - rule.hysteresis
    if not matched and well_below:
        lead.high_value_at = None  # re-armed: a new crossing flags again
        record_step(session, at=now, pattern=Pattern.HIGH_VALUE, action=None, kind=REARMED_KIND, lead=lead,
                    rule_id=rule.id, policy_version=version,
                    step_key=keys.high_value_rearm_key(lead.id, lead.crm_modified_at),
                    details={"score": lead.score, "rearm_below": _rearm_below(rule)})


def flag(session: Session, ctx: EngineContext, version: str, policy: Policy, rule: HighValueRule, lead: Lead,
         matched: list[str], now: datetime) -> AuditRow:
    refresh_team(session, lead)
    strategic = lead.tier is not None and lead.tier in rule.tiers
    owner = session.get(Rep, lead.owner_id) if lead.owner_id else None
    choice = _senior_choice(session, ctx, version, policy, rule, lead, owner, now)
    senior = choice.rep if choice is not None else None
    clock = clocks.open_clock_of(session, lead.id, clocks.SLA)
    details: dict[str, object] = {
        "criteria": matched, "strategic": strategic, "window_factor": rule.window_factor,
        "tightens": "windows of SLA clocks started from now on", "score": lead.score, "tier": lead.tier,
        "deal_size": lead.deal_size, "owner_seniority": owner.seniority if owner else None,
        "rearm_below": _rearm_below(rule),
    }
    if choice is not None:
        details.update(from_owner=lead.owner_id, to_owner=senior.id if senior else None, strategy=choice.strategy,
                       reason=choice.reason, excluded=choice.excluded)
    row = record_step(session, at=now, pattern=Pattern.HIGH_VALUE, to_owner=senior.id if senior else None,
                      action=StepAction.REASSIGN if senior else StepAction.NOTIFY,
                      kind=FLAG_KIND, lead=lead, rule_id=rule.id, policy_version=version,
                      step_key=keys.high_value_key(lead.id, lead.crm_modified_at), details=details,
                      window_s=clock.window_s if clock else None)
    lead.high_value_at = now
    context = lead_context(session, ctx, lead)
    change = change_owner(session, row, lead, context, senior.id, now) if senior else None
    why = f"high value ({'; '.join(matched)})"
    if rule.window_factor < 1.0:
        why += f"; its next SLA windows are {rule.window_factor:g} x the usual"
    if choice is not None:
        why += f"; given to {senior.name} (senior)" if senior else f"; kept: {choice.reason}"
    extra = {"priority": "high", "criteria": "; ".join(matched), "window_factor": f"{rule.window_factor:g}",
             "reason": why}
    due = clocks.breach_at(clock, ctx.book, session) if clock is not None and clock.status == "open" else now
    message = Message(kind=FLAG_KIND, rule_id=rule.id, policy_version=version, due_at=due,
                      window_s=clock.window_s if clock else 0, urgent=True, new_owner=senior, extra=extra)
    personas = [p for p in rule.notify if p is not Persona.REGIONAL_VP or strategic]
    if senior is not None and Persona.NEW_OWNER not in personas and Persona.NEW_OWNER in policy.notifications:
        personas.append(Persona.NEW_OWNER)
    for persona in personas:
        if persona in policy.notifications:
            notify(session, ctx, policy, row, persona, lead, context, message, now, depends_on=change)
    if senior is not None:
        # Like an SLA reassignment: the senior rep gets a fresh (now tightened) window of their own.
        lead.owner_id = senior.id
        refresh_team(session, lead)
        if clock is not None and clock.status == "open":
            clocks.close(clock, now, "reassigned")
            clocks.start_clock(session, ctx.book, lead, now, clocks.SLA)
        had_task = first_response.open_task(session, lead) is not None
        # No orphan task: the lead's open task follows it; with `on_reassign: close` it is closed and
        # the senior rep, like any new owner in that mode, gets a task of their own.
        if not first_response.hand_over(session, ctx, lead, row, now, depends_on=change) \
                and had_task:
            create_task(session, row, _task_for_senior(session, ctx, lead, context, senior, rule, now), now,
                        depends_on=change)
    return row


def _task_for_senior(session: Session, ctx: EngineContext, lead: Lead, context: LeadContext, senior: Rep,
                     rule: HighValueRule, now: datetime) -> TaskRequest:
    due, zone = first_response.due_for_new_owner(session, ctx, lead, now)
    body = (f"{lead.name} ({lead.company}) is a high-value lead handed to you by the SLA sidecar (rule "
            f"{rule.id}). Source: {lead.source or 'unknown'}, market: {lead.market or 'unknown'}, intent: "
            f"{lead.intent or 'unclear'}.\n{context.record_url}")
    return TaskRequest(lead=context, owner_id=senior.id, subject=f"High-value lead: {lead.name} ({lead.company})",
                       body=body, due_at=due, priority="high", due_tz=zone)


def _senior_choice(session: Session, ctx: EngineContext, version: str, policy: Policy, rule: HighValueRule,
                   lead: Lead, owner: Rep | None, now: datetime) -> Choice | None:
    """A senior teammate for a junior owner's lead (None: no reassignment is called for)."""
    if not rule.reassign_to_senior or owner is None or owner.seniority >= rule.senior_min_seniority:
        return None
    choice = choose_new_owner(session, ctx.book, version, policy, lead, now, policy.reassignment.high_value_strategy)
    if choice.rep is not None and choice.rep.seniority < rule.senior_min_seniority:
        return Choice(None, choice.strategy, f"no senior rep (seniority >= {rule.senior_min_seniority}) of the "
                                             "team is available", choice.excluded)
    return choice


def _rearm_below(rule: HighValueRule) -> float | None:
    return rule.min_score - rule.hysteresis if rule.min_score is not None else None
