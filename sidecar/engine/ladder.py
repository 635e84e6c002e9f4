"""One ladder step of one clock -> its audit row and its outbox effects (seed 000 pattern 1).

Everything a step does comes from the policy: which personas hear about it, whether a breach
note goes on the record, whether the lead is reassigned. Idempotency keys derive from
(clock, step, action, target), so re-deciding a step can never produce a second effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import audit, outbox
from sidecar.domain import Crm, Persona
from sidecar.engine import clocks
from sidecar.engine.policies import PolicyBook
from sidecar.engine.routing import choose_new_owner
from sidecar.links import RecordLinks
from sidecar.policy.model import LadderStep, Policy
from sidecar.ports import LeadContext, NoteRequest, Notification, OwnerChange, TaskRequest
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, Rep, Team


@dataclass
class EngineContext:
    book: PolicyBook
    links: RecordLinks
    late_after: timedelta = timedelta(seconds=60)  # later than this after its due instant = "late"


def lead_context(session: Session, ctx: EngineContext, lead: Lead) -> LeadContext:
    owner = session.get(Rep, lead.owner_id) if lead.owner_id else None
    return LeadContext(crm=Crm(lead.crm), crm_id=lead.crm_id, name=lead.name, company=lead.company,
                       market=lead.market, source=lead.source, intent=lead.intent, state=lead.state,
                       owner_id=lead.owner_id, owner_name=owner.name if owner else None,
                       record_url=ctx.links.url(lead.crm, lead.crm_id), email=lead.email)


def fire_step(session: Session, ctx: EngineContext, clock: Clock, lead: Lead, now: datetime) -> AuditRow:
    """Decide the clock's next step (due at `clock.next_due_at`) and advance the clock."""
    policy = ctx.book.get(session, clock.policy_version)
    index, due = clock.steps_fired, clock.next_due_at
    assert due is not None
    step = policy.ladder[index]
    refresh_team(session, lead)
    breach_at = clocks.breach_at(clock, ctx.book, session)
    prefix = f"clock:{clock.id}:step:{index}"
    details: dict[str, object] = {
        "clock_id": clock.id, "window_rule_id": clock.rule_id, "state": clock.state, "fraction": step.at,
        "due_at": due.isoformat(), "late": now - due > ctx.late_after,
    }
    choice = None
    if step.reassign:
        # High-value leads go to the most senior available rep (seed 000 pattern 3) when the policy says so.
        senior = is_high_value(policy, lead) and policy.high_value is not None and policy.high_value.reassign_to_senior
        strategy = policy.reassignment.high_value_strategy if senior else None
        choice = choose_new_owner(session, ctx.book, clock.policy_version, policy, lead, now, strategy)
        details.update(from_owner=lead.owner_id, to_owner=choice.rep.id if choice.rep else None,
                       strategy=choice.strategy, reason=choice.reason, excluded=choice.excluded)
    row = audit.record(session, at=now, kind=step.kind, lead=lead, rule_id=step.id,
                       policy_version=clock.policy_version,
                       elapsed_business_s=clocks.used_seconds(clock, ctx.book, session, now),
                       window_s=clock.window_s, step_key=prefix, details=details)
    _record_ignored_warnings(session, clock, policy, step, lead, row, now)
    context = lead_context(session, ctx, lead)
    change = queued = None
    personas = list(step.notify)
    extra: dict[str, str] = {"reason": choice.reason} if choice and choice.reason else {}
    if choice is not None and choice.rep is not None:
        change = outbox.enqueue(session, key=f"{prefix}:owner", now=now, audit_id=row.id, request=OwnerChange(
            lead=context, from_owner_id=lead.owner_id, to_owner_id=choice.rep.id,
            seen_modified_at=lead.crm_modified_at))
        outbox.enqueue(session, key=f"{prefix}:task:{choice.rep.id}", now=now, audit_id=row.id,
                       depends_on=change, request=_task_for_new_owner(context, choice.rep, lead, step, now))
    elif choice is not None:
        # Nobody in the team can take it: park it in the team's queue, and the manager hears why.
        queued = _to_queue(session, lead, context, prefix, row, now)
        extra["queued"] = "yes" if queued is not None else "no"
        if Persona.MANAGER not in personas and Persona.MANAGER in policy.notifications:
            personas.append(Persona.MANAGER)
    for persona in personas:
        # Messages about a reassignment go out only once the CRM has taken the owner change.
        _notify(session, ctx, policy, step, persona, lead, context, clock, row, breach_at, now,
                new_owner=choice.rep if choice else None, depends_on=change, extra=extra)
    if step.crm_note:
        outbox.enqueue(session, key=f"{prefix}:note", now=now, audit_id=row.id, request=NoteRequest(
            lead=context, at=now, body=_breach_note(lead, clock, step, row, breach_at)))
    clock.steps_fired += 1
    if choice is not None and choice.rep is not None:
        # The new owner gets a fresh window of their own; the old clock ends here. The shadow row takes
        # the new owner at once so that routing counts this lead toward their capacity; if the CRM
        # refuses the change, the next poll brings the true owner back.
        clocks.close(clock, now, "reassigned")
        lead.owner_id = choice.rep.id
        clocks.start_clock(session, ctx.book, lead, now)
    elif queued is not None:
        clocks.close(clock, now, "queued")  # a queue is not a person: ops review takes it from here
        lead.owner_id = queued.payload["to_owner_id"]
    else:
        clocks.plan(clock, ctx.book, session)
    return row


def refresh_team(session: Session, lead: Lead) -> None:
    """The lead's team is its owner's team now (the directory may have been applied or changed since)."""
    owner = session.get(Rep, lead.owner_id) if lead.owner_id else None
    if owner is not None and owner.team_id != lead.team_id:
        lead.team_id = owner.team_id


def _to_queue(session: Session, lead: Lead, context: LeadContext, prefix: str, row: AuditRow,
              now: datetime) -> OutboxRow | None:
    team = session.get(Team, lead.team_id) if lead.team_id else None
    if team is None or not team.ops_queue_id:
        return None
    return outbox.enqueue(session, key=f"{prefix}:queue", now=now, audit_id=row.id, request=OwnerChange(
        lead=context, from_owner_id=lead.owner_id, to_owner_id=team.ops_queue_id,
        seen_modified_at=lead.crm_modified_at))


def _record_ignored_warnings(session: Session, clock: Clock, policy: Policy, step: LadderStep, lead: Lead,
                             row: AuditRow, now: datetime) -> None:
    """At the breach, every earlier warning of this clock went unanswered (progress would have reset
    the clock): audit each as ignored, linked to the warning, for quarterly calibration."""
    if step.at < 1.0:
        return
    for index, earlier in enumerate(policy.ladder[: clock.steps_fired]):
        if earlier.at >= 1.0 or not earlier.notify:
            continue
        warning = session.scalars(select(AuditRow).where(AuditRow.step_key == f"clock:{clock.id}:step:{index}")).first()
        # An "I'm on it" click without progress is still an unanswered warning; calibration can tell them apart.
        acked = session.scalars(select(AuditRow.id).where(
            AuditRow.step_key.startswith(f"ack:clock:{clock.id}:step:{index}:"))).first() is not None
        audit.record(session, at=now, kind="notification_ignored", lead=lead, rule_id=earlier.id,
                     policy_version=clock.policy_version, step_key=f"clock:{clock.id}:step:{index}:ignored",
                     details={"warning_audit_id": warning.id if warning else None, "breach_audit_id": row.id,
                              "clock_id": clock.id, "notified": [p.value for p in earlier.notify],
                              "acknowledged": acked})


def _notify(session: Session, ctx: EngineContext, policy: Policy, step: LadderStep, persona: Persona,
            lead: Lead, context: LeadContext, clock: Clock, row: AuditRow, breach_at: datetime,
            now: datetime, new_owner: Rep | None, depends_on: OutboxRow | None,
            extra: dict[str, str]) -> None:
    route = policy.notifications[persona]
    team = session.get(Team, lead.team_id) if lead.team_id else None
    recipient: Rep | None = None
    if persona is Persona.NEW_OWNER:
        if new_owner is None:
            return  # nobody took the lead over: the manager hears about it instead
        recipient = new_owner
    elif persona is Persona.OWNER:
        recipient = session.get(Rep, lead.owner_id) if lead.owner_id else None
    elif persona is Persona.MANAGER and route.via == "slack_dm" and team and team.manager_id:
        recipient = session.get(Rep, team.manager_id)
    elif persona is Persona.REGIONAL_VP and route.via == "slack_dm":
        recipient = _regional_vp(session, lead)
    channel = route.channel if route.via == "channel" else (team.slack_channel if team else None)
    market_code = team.market if team else lead.market
    tz = ctx.book.market(policy, market_code)[1].tz
    urgent = step.at >= 1.0 or step.reassign is not None
    payload: dict[str, object] = {**extra, "state_since": lead.state_entered_at.isoformat()}
    if not urgent and persona is Persona.OWNER:
        payload["snooze_allowed"] = True  # a warning, to its owner: "give me 15 minutes" is fair
    if new_owner is not None:
        payload.update(new_owner_name=new_owner.name, from_owner_name=context.owner_name or "")
    not_before = None
    if route.quiet_hours and not urgent:
        # Quiet hours: a warning waits for the recipient's next business hour; breaches never wait.
        not_before = ctx.book.calendar(clock.policy_version, policy, market_code).next_open(now)
    outbox.enqueue(session, key=f"clock:{clock.id}:step:{clock.steps_fired}:notify:{persona.value}",
                   now=now, audit_id=row.id, depends_on=depends_on,
                   not_before=not_before, request=Notification(
                       kind=step.kind, persona=persona, via=route.via, lead=context, rule_id=step.id,
                       policy_version=clock.policy_version, at=now, due_at=breach_at,
                       elapsed_business_s=row.elapsed_business_s or 0.0, window_s=clock.window_s, tz=tz,
                       recipient_email=recipient.email if recipient else None,
                       recipient_name=recipient.name if recipient else context.owner_name,
                       channel=channel, extra=payload, urgent=urgent))


def is_high_value(policy: Policy, lead: Lead) -> bool:
    rule = policy.high_value
    if rule is None:
        return False
    return ((rule.min_score is not None and lead.score is not None and lead.score >= rule.min_score)
            or (lead.tier is not None and lead.tier in rule.tiers)
            or (rule.min_deal_size is not None and lead.deal_size is not None and lead.deal_size >= rule.min_deal_size))


def _regional_vp(session: Session, lead: Lead) -> Rep | None:
    """The VP of the lead's team if the directory names one there, else the org's VP."""
    vps = list(session.scalars(select(Rep).where(Rep.role == "vp", Rep.active.is_(True)).order_by(Rep.id)))
    return next((vp for vp in vps if vp.team_id == lead.team_id), vps[0] if vps else None)


def _task_for_new_owner(context: LeadContext, rep: Rep, lead: Lead, step: LadderStep,
                        now: datetime) -> TaskRequest:
    body = (f"{lead.name} ({lead.company}) was reassigned to you by the SLA sidecar after no progress "
            f"in {lead.state} (rule {step.id}). Source: {lead.source or 'unknown'}, market: "
            f"{lead.market or 'unknown'}, intent: {lead.intent or 'unclear'}.\n{context.record_url}")
    return TaskRequest(lead=context, owner_id=rep.id, subject=f"Follow up now: {lead.name} ({lead.company})",
                       body=body, due_at=now + timedelta(hours=1), priority="high")


def _breach_note(lead: Lead, clock: Clock, step: LadderStep, row: AuditRow, breach_at: datetime) -> str:
    return (f"SLA breached: no progress on this {clock.state} lead within {clock.window_s // 60} business "
            f"minutes (window rule {clock.rule_id}; step {step.id}, policy {clock.policy_version}). "
            f"Deadline was {breach_at:%Y-%m-%d %H:%M} UTC; owner at the time: {lead.owner_id or 'none'}. "
            f"Audit #{row.id}.")
