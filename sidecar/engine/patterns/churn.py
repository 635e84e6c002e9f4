"""Churn-risk surfacing (seed 000 pattern 5).

A signal (usage drop, ticket spike, stakeholder departure: the policy's `churn.flags`) arrives as a
CRM flag on a lead (`on_applied`) or through `POST /api/signals` (`sidecar.web.signals`); both end in
`raise_signal`, idempotent by signal id. It tags the lead in the CRM (`LeadUpdate(add_tags=...)`),
tells the account owner and customer success, creates a retention-touchpoint task for the owner,
and with `pause_outreach` pauses the NEW-state clocks of the other leads of the same account
(account = normalised company name; the snapshots carry no CRM account id), telling each rep why,
until the retention touchpoint is done: a progress activity (call, e-mail, meeting) logged on the
signalled lead after the signal, or that lead closing, releases the hold and the paused clocks
resume with the time they had left. A lead of the account arriving meanwhile is paused too.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import outbox
from sidecar.audit import Pattern, StepAction
from sidecar.domain import TERMINAL_STATES, LeadState, Persona
from sidecar.engine import clocks
from sidecar.engine.patterns import keys
from sidecar.engine.patterns.shared import (
    EngineContext,
    Message,
    create_task,
    lead_context,
    notify,
    record_step,
    refresh_team,
)
from sidecar.policy.markets import duration_seconds
from sidecar.policy.model import ChurnRule
from sidecar.ports import LeadUpdate, TaskRequest
from sidecar.store.models import AuditRow, ChurnHold, Clock, Lead, LeadEvent, Signal

if TYPE_CHECKING:
    from sidecar.ingest import Applied

RISK_KIND = "churn_risk"  # audit labels; code reads `pattern` and `action`
PAUSED_KIND = "churn_outreach_paused"
RESUMED_KIND = "churn_outreach_resumed"
_LEGAL = re.compile(r"\b(inc|incorporated|llc|ltd|limited|gmbh|ag|plc|corp|corporation|co|sa|bv|pvt)\b")


def account_key(company: str | None) -> str | None:
    """"Emirates Group, Inc." and "emirates group" are one account; None for no company."""
    text = re.sub(r"[^\w\s]", " ", (company or "").casefold())
    words = _LEGAL.sub(" ", text).split()
    return " ".join(words)[:300] or None


@dataclass(frozen=True)
class SignalIn:
    signal_id: str
    type: str
    source: str  # api | crm_flag
    occurred_at: datetime | None = None


def hold_marker(hold: ChurnHold) -> str:
    return f"churn:{hold.id}"


def active_hold(session: Session, account: str | None) -> ChurnHold | None:
    if account is None:
        return None
    return session.scalars(select(ChurnHold).where(ChurnHold.account_key == account, ChurnHold.released_at.is_(None))
                           .order_by(ChurnHold.id)).first()


def raise_signal(session: Session, ctx: EngineContext, lead: Lead, signal: SignalIn,
                 now: datetime) -> tuple[AuditRow, bool]:
    """Decide one signal: (its audit row, True) the first time; (the earlier row, False) for a repeat."""
    seen = session.scalars(select(Signal).where(Signal.signal_id == signal.signal_id)).first()
    if seen is not None and seen.audit_id is not None:
        earlier = session.get(AuditRow, seen.audit_id)
        assert earlier is not None
        return earlier, False
    version, policy = ctx.book.active(session)
    rule = policy.churn
    if rule is None or signal.type not in rule.flags:
        raise ValueError(f"unknown signal type {signal.type!r}; the policy's churn.flags name the known ones")
    refresh_team(session, lead)
    lead.account_key = account_key(lead.company)
    calendar = ctx.book.calendar(version, policy, lead.market)
    task_s = duration_seconds(rule.retention_task_due, ctx.book.business_day(policy, lead.market))
    due = calendar.add(now, timedelta(seconds=task_s))
    held = active_hold(session, lead.account_key) if rule.pause_outreach else None
    row = record_step(session, at=now, pattern=Pattern.CHURN, action=StepAction.TAG, kind=RISK_KIND, lead=lead,
                      rule_id=rule.id, policy_version=version, step_key=keys.signal_key(signal.signal_id),
                      details={"signal_type": signal.type, "signal_id": signal.signal_id, "source": signal.source,
                               "occurred_at": signal.occurred_at.isoformat() if signal.occurred_at else None,
                               "account": lead.account_key, "tag": rule.tag, "retention_task_due": due.isoformat(),
                               "pause_outreach": rule.pause_outreach,
                               "already_paused_by_hold": held.id if held else None})
    session.add(Signal(signal_id=signal.signal_id, type=signal.type, source=signal.source, lead_id=lead.id,
                       account_key=lead.account_key, occurred_at=signal.occurred_at, received_at=now,
                       audit_id=row.id))
    context = lead_context(session, ctx, lead)
    outbox.enqueue(session, key=keys.effect_key(keys.signal_key(signal.signal_id), "tag"), now=now, audit_id=row.id,
                   request=LeadUpdate(lead=context, add_tags=(rule.tag,), reason=f"churn risk: {signal.type}"))
    task = None
    if lead.owner_id is not None:
        task = create_task(session, row, TaskRequest(
            lead=context, owner_id=lead.owner_id, subject=f"Retention touchpoint: {lead.company or lead.name}",
            body=(f"Churn-risk signal '{signal.type}' for {lead.company or lead.name} (rule {rule.id}, policy "
                  f"{version}). Reach out to the account before {due:%Y-%m-%d %H:%M} UTC; new outreach to this "
                  f"account is {'paused until you log it' if rule.pause_outreach else 'not paused'}.\n"
                  f"{context.record_url}"),
            due_at=due, priority="high"), now)
    message = Message(kind=RISK_KIND, rule_id=rule.id, policy_version=version, due_at=due, window_s=task_s,
                      urgent=True, extra={"signal": signal.type, "account": lead.company,
                                          "retention_task_due": due.isoformat(),
                                          "reason": f"signal '{signal.type}' ({signal.source})"
                                                    + ("; new outreach to the account is paused"
                                                       if rule.pause_outreach else "")})
    for persona in rule.notify:
        if persona in policy.notifications:
            notify(session, ctx, policy, row, persona, lead, context, message, now)
    if rule.pause_outreach and task is not None and lead.account_key is not None and held is None:
        hold = ChurnHold(account_key=lead.account_key, lead_id=lead.id, signal_id=signal.signal_id,
                         task_key=task.idempotency_key, started_at=now)
        session.add(hold)
        session.flush()
        for other in session.scalars(select(Lead).where(Lead.account_key == lead.account_key,
                                                        Lead.state == LeadState.NEW.value).order_by(Lead.id)):
            pause_for_hold(session, ctx, rule, version, hold, other, now)
    return row, True


def pause_for_hold(session: Session, ctx: EngineContext, rule: ChurnRule, version: str, hold: ChurnHold,
                   lead: Lead, now: datetime) -> None:
    """Pause the lead's running NEW clocks for the hold and tell its owner why (once per hold and lead).
    The stuck clock pauses with the SLA clock: a lead the sidecar itself keeps waiting is not stuck."""
    if lead.id == hold.lead_id:
        return  # the signalled lead is the one being worked (the retention touchpoint): its clock runs
    clock = clocks.open_clock_of(session, lead.id, clocks.SLA)
    if clock is None or clock.status != "open" or clock.state != LeadState.NEW.value:
        return
    clocks.pause(clock, ctx.book, session, now)
    clock.paused_by = hold_marker(hold)
    stuck = clocks.open_clock_of(session, lead.id, clocks.STUCK)
    if stuck is not None and stuck.status == "open":
        clocks.pause(stuck, ctx.book, session, now)
        stuck.paused_by = hold_marker(hold)
    subject = session.get(Lead, hold.lead_id)
    row = record_step(session, at=now, pattern=Pattern.CHURN, action=StepAction.HOLD, kind=PAUSED_KIND, lead=lead,
                      rule_id=rule.id, policy_version=version, step_key=keys.churn_pause_key(hold.id, lead.id),
                      window_s=clock.window_s, elapsed_business_s=clock.consumed_s,
                      details={"hold_id": hold.id, "account": hold.account_key, "signal_id": hold.signal_id,
                               "clock_id": clock.id, "retention_lead": subject.crm_id if subject else None})
    policy = ctx.book.get(session, version)
    if Persona.OWNER in policy.notifications:
        reason = (f"{lead.company} is at churn risk: new outreach waits until the retention touchpoint "
                  "is done, and your SLA clock for this lead is paused meanwhile")
        notify(session, ctx, policy, row, Persona.OWNER, lead, lead_context(session, ctx, lead),
               Message(kind=PAUSED_KIND, rule_id=rule.id, policy_version=version, due_at=now,
                       window_s=clock.window_s, urgent=False, extra={"reason": reason}), now)


def release(session: Session, ctx: EngineContext, hold: ChurnHold, now: datetime, by: str) -> AuditRow:
    """The retention touchpoint is done: resume the clocks this hold paused (not those a pause state holds)."""
    hold.released_at, hold.released_by = now, by[:100]
    version, policy = ctx.book.active(session)
    pause_states = {state.value for state in policy.pause_states}
    resumed = []
    for clock in session.scalars(select(Clock).where(Clock.paused_by == hold_marker(hold)).order_by(Clock.id)):
        clock.paused_by = None
        lead = session.get(Lead, clock.lead_id)
        if clock.status == "paused" and lead is not None and lead.state not in pause_states:
            clocks.resume(clock, ctx.book, session, now)
            if lead.crm_id not in resumed:  # its SLA and stuck clocks: one lead
                resumed.append(lead.crm_id)
    subject = session.get(Lead, hold.lead_id)
    assert subject is not None  # a hold's lead is never deleted from the store
    return record_step(session, at=now, pattern=Pattern.CHURN, action=None, kind=RESUMED_KIND, lead=subject,
                       rule_id=policy.churn.id if policy.churn else None, policy_version=version,
                       step_key=keys.churn_release_key(hold.id),
                       details={"hold_id": hold.id, "account": hold.account_key, "released_by": by,
                                "resumed_leads": resumed, "task_key": hold.task_key})


def pause_if_held(session: Session, ctx: EngineContext, lead: Lead, now: datetime) -> None:
    """Clocks just started for `lead` outside a snapshot (a compliance clear) wait like the rest of
    its account while a churn hold is on."""
    version, policy = ctx.book.active(session)
    rule = policy.churn
    if rule is None or not rule.pause_outreach:
        return
    lead.account_key = account_key(lead.company)
    held = active_hold(session, lead.account_key)
    if held is not None:
        pause_for_hold(session, ctx, rule, version, held, lead, now)


def on_applied(session: Session, ctx: EngineContext, applied: Applied, now: datetime) -> None:
    lead = applied.lead
    if lead is None:  # a merge of a lead never tracked here
        return
    lead.account_key = account_key(lead.company)
    version, policy = ctx.book.active(session)
    rule = policy.churn
    if rule is None:
        return
    held_for_compliance = applied.on_compliance_hold(session)  # a held lead gets nothing else
    raised = False
    for event in applied.events if not held_for_compliance else ():
        for flag in sorted(_raised_flags(lead, event) & set(rule.flags)):
            raise_signal(session, ctx, lead, SignalIn(f"{lead.crm}:{lead.crm_id}:{flag}@{event.at.isoformat()}",
                                                      flag, "crm_flag", event.at), now)
            raised = True
    # A lead created just now holds no account yet unless a signal above made it (one query less per new lead).
    mine_held = [] if applied.created and not raised else list(session.scalars(select(ChurnHold).where(
        ChurnHold.lead_id == lead.id, ChurnHold.released_at.is_(None))))
    for mine in mine_held:
        done = next((e for e in applied.events if e.kind == "progress" and e.at >= mine.started_at), None)
        if done is not None:
            release(session, ctx, mine, now, f"progress:{done.new}")
        elif lead.state in {state.value for state in TERMINAL_STATES}:
            release(session, ctx, mine, now, f"lead closed:{lead.state}")  # nobody will touch it any more
    held = active_hold(session, lead.account_key) if rule.pause_outreach else None
    if held is not None:
        pause_for_hold(session, ctx, rule, version, held, lead, now)  # a new lead of a held account


def _raised_flags(lead: Lead, event: LeadEvent) -> set[str]:
    """Flags this event raised: all of them at creation, the added ones on a change of `flags`."""
    if event.kind == "created":
        return {str(flag) for flag in lead.flags}
    if event.kind != "field_changed" or event.detail.get("field") != "flags":
        return set()
    try:  # ingest stores the old list as its text
        before = {str(flag) for flag in ast.literal_eval(event.old or "[]")}
    except (ValueError, SyntaxError):
        before = set()
    return {str(flag) for flag in lead.flags} - before
