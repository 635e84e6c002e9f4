"""First-response task at arrival (seed 002 "Timed tasks", "Practical SLA escalation model").

A new lead whose arrival starts a NEW clock gets one CRM task for its owner, decided in the ingest
path (the event hook) so that it goes out with the same poll or webhook drain: due at the clock's
100 % instant in business time, saying who the lead is, what they want, what to do first (per
intent tier) and where the record is, and naming the rule and policy version. One per lead
(`keys.first_response_key`), whatever snapshots, owner changes or progress resets follow.

A lead that arrives without a person owning it (unowned, or in a queue) gets its task when it gets
an owner: from the CRM (an owner change in a later snapshot) or from initial assignment
(`hand_over`). A lead has one open sidecar task at a time, and it follows the lead: when the lead
changes hands later (ladder reassignment, high-value senior, revert), `hand_over` moves that task
(the first-response task, or the follow-up task of an earlier reassignment) to the new owner or
closes it (`first_response.on_reassign`). A re-owned task is the new owner's task, as when a
person changes a lead's owner in Salesforce and its open activities move along; only a lead whose
task was closed (or that had none) gets a follow-up task from the reassignment. So no task is
left with someone who no longer owns the lead, and nobody holds two for one lead.

Intent tiers whose `escalation` is `qualification_task` or `review_queue` get a qualification task
instead (their clock has no ladder, see `Policy.ladder_of`); `review_queue` also parks the lead in
its team's ops review queue.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from sidecar import audit, outbox
from sidecar.audit import Pattern, StepAction
from sidecar.domain import LeadState
from sidecar.engine import clocks
from sidecar.engine.ownership import needs_owner, queue_ids
from sidecar.engine.patterns import keys
from sidecar.engine.patterns.shared import (
    EngineContext,
    create_task,
    lead_context,
    ops_queue_of,
    record_step,
    to_queue,
)
from sidecar.policy.model import FirstResponse, IntentTier
from sidecar.ports import LeadContext, TaskRequest, TaskUpdate
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow

if TYPE_CHECKING:
    from sidecar.ingest import Applied

QUALIFY_ACTION = "Qualify first: find out what they need and whether it is a fit, then route or disqualify."
REVIEW_KIND = "first_response_review_queue"  # audit label of the review-queue hand-off
_ARRIVAL_EVENTS = frozenset({"created", "owner_changed"})
_NOT_DONE = ("dead", "skipped")
NO_CLOCK_DUE = timedelta(hours=1)  # a new owner's task while no clock runs: like a ladder follow-up


def on_applied(session: Session, ctx: EngineContext, applied: Applied, now: datetime) -> None:
    """Event hook: a lead that just arrived, or just got its first person owner, gets its task."""
    if applied.lead is not None and any(event.kind in _ARRIVAL_EVENTS for event in applied.events):
        create_for(session, ctx, applied.lead, now)


def create_for(session: Session, ctx: EngineContext, lead: Lead, now: datetime, *,
               depends_on: OutboxRow | None = None) -> AuditRow | None:
    """Decide the lead's first-response task (audit + outbox) if it is due one; None otherwise."""
    clock = _arrival_clock(session, ctx, lead)
    if clock is None or _decided(session, lead):
        return None
    policy = ctx.book.get(session, clock.policy_version)
    section = policy.first_response
    if section is None or not section.enabled or not _person_owns(session, lead):
        return None
    tier = policy.tier(lead.intent)
    escalation = tier.escalation if tier is not None else "ladder"
    due, tz = _deadline(session, ctx, clock)
    context = lead_context(session, ctx, lead)
    action = _first_action(section, tier)
    details: dict[str, object] = {
        "clock_id": clock.id, "window_rule_id": clock.rule_id, "due_at": due.isoformat(), "owner": lead.owner_id,
        "escalation": escalation, "first_action": action, "ladder": clock.ladder or "main",
    }
    row = record_step(session, at=now, pattern=Pattern.FIRST_RESPONSE, action=StepAction.TASK, kind=section.kind,
                      lead=lead, rule_id=section.id, policy_version=clock.policy_version,
                      step_key=keys.first_response_key(lead.id), details=details, window_s=clock.window_s)
    create_task(session, row, _task(context, lead, section, clock, due, tz, action, escalation), now,
                depends_on=depends_on)
    if escalation == "review_queue":
        _to_review(session, lead, context, row, clock, now)
    return row


def hand_over(session: Session, ctx: EngineContext, lead: Lead, decision: AuditRow, now: datetime, *,
              depends_on: OutboxRow | None = None, restarted: bool = False) -> bool:
    """`decision` gave the lead to `lead.owner_id` (already set). The lead's open sidecar task (its
    first-response task, or the follow-up task of an earlier reassignment) follows it, or is closed,
    as the policy says; a lead that had no first-response task yet because nobody owned it gets it
    now. True when the new owner holds (or is being given) the lead's task, so the caller must not
    add a second one. `depends_on`: the owner change, so that a refused change leaves the task where it was.
    `restarted`: the caller started the new owner's clock already (a moved task is due when it
    breaches); that clock is not the one the lead arrived with, so it gives no first-response task."""
    found = open_task(session, lead)
    if found is None:
        if restarted:
            return False
        first = session.scalars(select(AuditRow.id).where(
            AuditRow.step_key == keys.first_response_key(lead.id))).first()
        return first is None and create_for(session, ctx, lead, now, depends_on=depends_on) is not None
    if decision.step_key is None:
        return False
    task, holder = found
    version = decision.policy_version or ctx.book.active(session)[0]
    section = ctx.book.get(session, version).first_response
    person = _person_owns(session, lead)
    if person and holder == lead.owner_id:
        # The task is with the lead's owner already (e.g. a revert of a move the CRM never made):
        # nothing to move, and closing it would leave the owner without one (even in close mode).
        return True
    close = not person or (section is not None and section.on_reassign == "close")
    # A moved task is due at the new owner's deadline, not the old one (often already past).
    due = None if close else new_deadline(session, ctx, lead)
    update = TaskUpdate(lead=lead_context(session, ctx, lead), task_key=task.idempotency_key,
                        new_owner_id=None if close else lead.owner_id, close=close,
                        due_at=due[0] if due else None, due_tz=due[1] if due else None)
    outbox.enqueue(session, key=keys.task_update_key(decision.step_key), request=update, now=now,
                   audit_id=decision.id, depends_on=depends_on)
    return not close


def new_deadline(session: Session, ctx: EngineContext, lead: Lead) -> tuple[datetime, str] | None:
    """The lead's current owner's deadline and the lead market's time zone: the breach instant of
    its running SLA clock (callers start the new owner's clock first). None while no clock runs
    (a paused or windowless state has no deadline to give a task)."""
    clock = clocks.open_clock_of(session, lead.id, clocks.SLA)
    if clock is None or clock.status != "open" or clock.running_since is None:
        return None
    return _deadline(session, ctx, clock)


def due_for_new_owner(session: Session, ctx: EngineContext, lead: Lead, now: datetime) -> tuple[datetime, str]:
    """A new task's due instant and zone for the lead's current owner: their deadline (`new_deadline`),
    or, while no clock runs (a paused state), an hour from `now`, dated in the market's zone."""
    return new_deadline(session, ctx, lead) or (now + NO_CLOCK_DUE, market_zone(session, ctx, lead))


def market_zone(session: Session, ctx: EngineContext, lead: Lead) -> str:
    """The time zone of the lead's market: a CRM task's due date is the date there, not in UTC
    (a task due 18:30 in Los Angeles is due today, though it is tomorrow in UTC)."""
    return ctx.book.market(ctx.book.active(session)[1], lead.market)[1].tz


def _deadline(session: Session, ctx: EngineContext, clock: Clock) -> tuple[datetime, str]:
    """A task's due instant for `clock` (its 100 % instant in business time) and the time zone of
    the clock's market, whose date is the CRM task's due date."""
    policy = ctx.book.get(session, clock.policy_version)
    return clocks.breach_at(clock, ctx.book, session), ctx.book.market(policy, clock.market)[1].tz


def open_task(session: Session, lead: Lead) -> tuple[OutboxRow, str] | None:
    """The lead's open sidecar task and who holds it, newest first: its first-response task (or
    the task of its initial assignment), a reassignment's follow-up task or a revert's task, created (or on its way)
    and not closed by a hand-over. A lead has at most one (`hand_over` keeps it so); older data may
    have more, the newest is the one that moves."""
    tasks = session.scalars(select(OutboxRow).join(AuditRow, AuditRow.id == OutboxRow.audit_id).where(
        AuditRow.lead_id == lead.id, OutboxRow.action == "create_task",
        or_(AuditRow.step_key == keys.first_response_key(lead.id),
            and_(AuditRow.pattern == Pattern.SLA.value, AuditRow.action == StepAction.REASSIGN.value),
            # with `on_reassign: close`, a revert gives the original owner a task of their own
            and_(AuditRow.pattern == Pattern.REVERT.value, AuditRow.action == StepAction.REVERT.value),
            # with `first_response` off, initial assignment writes the rep's first task itself
            and_(AuditRow.pattern == Pattern.ASSIGNMENT.value, AuditRow.action == StepAction.ASSIGN.value)),
    ).order_by(OutboxRow.id.desc()))
    for task in tasks:
        if _cancelled(session, task):
            continue  # never written (or never will be): nothing to move
        holder = _task_holder(session, lead, task)
        if holder is not None:
            return task, holder
    return None


def closed_by_sidecar(session: Session, lead: Lead, at: datetime) -> bool:
    """Whether the sidecar decided, at or before `at`, to close the lead's first-response task: its
    completion seen in the CRM afterwards is that close, not a rep's first response (no progress)."""
    updates = session.scalars(select(OutboxRow).join(AuditRow, AuditRow.id == OutboxRow.audit_id).where(
        AuditRow.lead_id == lead.id, OutboxRow.action == "update_task", OutboxRow.created_at <= at))
    prefix = keys.first_response_key(lead.id)
    return any(update.payload.get("close") and str(update.payload.get("task_key", "")).startswith(prefix)
               and not _cancelled(session, update) for update in updates)


def _cancelled(session: Session, row: OutboxRow) -> bool:
    """The effect will not happen: it failed or was skipped, or waits on one that did."""
    parent = session.get(OutboxRow, row.depends_on) if row.depends_on else None
    return row.status in _NOT_DONE or (parent is not None and parent.status in _NOT_DONE)


def _task_holder(session: Session, lead: Lead, task: OutboxRow) -> str | None:
    """Who holds the task after the hand-overs decided so far (None: closed). A hand-over that will
    not happen (failed, skipped, or waiting on an owner change that was cancelled) does not count."""
    holder: str | None = str(task.payload.get("owner_id"))
    updates = session.scalars(select(OutboxRow).join(AuditRow, AuditRow.id == OutboxRow.audit_id).where(
        AuditRow.lead_id == lead.id, OutboxRow.action == "update_task").order_by(OutboxRow.id))
    for update in updates:
        if _cancelled(session, update):
            continue
        if update.payload.get("task_key") == task.idempotency_key:
            holder = None if update.payload.get("close") else update.payload.get("new_owner_id")
    return holder


def _decided(session: Session, lead: Lead) -> bool:
    """The lead had its task already (an owner change in the CRM later is the human's to handle:
    Salesforce and HubSpot offer to move open tasks with it)."""
    key = keys.first_response_key(lead.id)
    if session.scalars(select(AuditRow.id).where(AuditRow.step_key == key)).first() is not None:
        return True
    audit.note_absent_key(session, key)  # its decision, recorded next, need not look it up again
    return False


def _arrival_clock(session: Session, ctx: EngineContext, lead: Lead) -> Clock | None:
    """The open NEW clock the lead arrived with, if nobody has worked the lead yet and it arrived
    after go-live (a first backfill must not flood reps with tasks for old leads)."""
    if lead.state != LeadState.NEW or lead.last_progress_at is not None:
        return None
    clock = clocks.open_clock_of(session, lead.id, clocks.SLA)
    if clock is None or clock.status != "open" or clock.state != LeadState.NEW:
        return None
    go_live = ctx.book.go_live(session)
    arrived = lead.created_at or lead.state_entered_at
    if go_live is not None and arrived < go_live:
        return None
    return clock


def _person_owns(session: Session, lead: Lead) -> bool:
    """A rep, not nobody and not a queue (a queue cannot work a task)."""
    return not needs_owner(lead, queue_ids(session))


def _first_action(section: FirstResponse, tier: IntentTier | None) -> str:
    if tier is not None and tier.first_action:
        return tier.first_action
    if tier is not None and tier.escalation != "ladder":
        return QUALIFY_ACTION
    return section.first_action


def _task(context: LeadContext, lead: Lead, section: FirstResponse, clock: Clock, due: datetime, tz: str,
          action: str, escalation: str) -> TaskRequest:
    verb = "Qualify" if escalation != "ladder" else "First response"
    local = due.astimezone(ZoneInfo(tz))
    body = "\n".join((
        f"Lead: {lead.name}" + (f" ({lead.company})" if lead.company else ""),
        f"Source: {lead.source or 'unknown'}; market: {lead.market or 'unknown'}",
        f"Service interest / declared intent: {lead.intent or 'unclear'} intent "
        f"(tier chosen by {lead.intent_rule or 'default'})",
        f"Recommended first action: {action}",
        f"Due: {local:%a %Y-%m-%d %H:%M} {local.tzname()} ({clock.window_s // 60} business minutes, "
        f"window rule {clock.rule_id})",
        f"Record: {context.record_url}",
        f"Rule {section.id}, policy {clock.policy_version}",
    ))
    priority: Literal["high", "normal", "low"] = (
        "high" if lead.intent == "high" else "low" if lead.intent == "low" else "normal")
    return TaskRequest(lead=context, owner_id=str(lead.owner_id), subject=f"{verb}: {lead.name} ({lead.company})",
                       body=body, due_at=due, priority=priority, due_tz=tz)


def _to_review(session: Session, lead: Lead, context: LeadContext, row: AuditRow, clock: Clock,
               now: datetime) -> None:
    """Unclear intent, `escalation: review_queue`: the lead waits in its team's ops review queue."""
    queue = ops_queue_of(session, lead)
    review = record_step(session, at=now, pattern=Pattern.FIRST_RESPONSE,
                         action=StepAction.QUEUE if queue else None, to_owner=queue, kind=REVIEW_KIND, lead=lead,
                         rule_id=f"intent.tiers.{lead.intent}", policy_version=clock.policy_version,
                         step_key=keys.effect_key(str(row.step_key), "review"),
                         details={"queue": queue, "reason": "unclear intent: review before any escalation"
                                  if queue else "the team has no ops queue in the directory"})
    queued = to_queue(session, review, lead, context, now)
    if queued is not None:
        lead.owner_id = str(queued.payload["to_owner_id"])

