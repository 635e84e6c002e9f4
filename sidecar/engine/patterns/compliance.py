"""Compliance hold (seed 000 pattern 4): a flagged lead is held until compliance decides.

Event-driven: after every applied snapshot (arrival, or a flag or country that appears later) the
lead's flags are matched against `compliance.flags`, plus "unlicensed_jurisdiction" when its
country is known and not licensed for its market. A new set of matched criteria holds the lead:
- the CRM status becomes the one the policy maps to COMPLIANCE_HOLD (a LeadUpdate; it overrides
  whatever status the lead has: a rep must not work a flagged lead);
- the SLA and stuck clocks pause at once, in the shadow store, and stay paused while the item is
  open whatever the CRM says meanwhile (ingest checks `review_queue.on_compliance_hold`);
- an item opens in the compliance queue; the owner hears they cannot work the lead yet, and the
  compliance channel gets the matched criteria, the lead's details and the record link.
The decision (clear or reject) is in `compliance_decisions`; aging items are re-surfaced there too.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import outbox, review_queue
from sidecar.audit import Pattern, StepAction
from sidecar.domain import TERMINAL_STATES, LeadState, Persona
from sidecar.engine import clocks
from sidecar.engine.ownership import needs_owner, queue_ids
from sidecar.engine.patterns import keys
from sidecar.engine.patterns.shared import EngineContext, Message, lead_context, notify, record_step
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import ComplianceRule, Policy
from sidecar.ports import LeadUpdate
from sidecar.store.models import AuditRow, Lead, OutboxRow

if TYPE_CHECKING:
    from sidecar.ingest import Applied

UNLICENSED = "unlicensed_jurisdiction"
HOLD_REASON = "compliance hold"  # the review item's reason: one open hold per lead


def crm_status_for(policy: Policy, crm: str, state: LeadState) -> str | None:
    """The CRM status value for a canonical state: the first one the policy's state map gives it."""
    state_map = policy.states.get(crm)  # type: ignore[call-overload]
    if state_map is None:
        return None
    return next((status for status, mapped in state_map.map.items() if mapped == state), None)


def matched_criteria(book: PolicyBook, policy: Policy, rule: ComplianceRule, lead: Lead) -> list[str]:
    """The rule's flags the lead carries, plus an unlicensed jurisdiction when the policy lists the
    licensed countries of the lead's market and its country is known and not among them."""
    found = set(lead.flags or []) & set(rule.flags)
    market = book.market(policy, lead.market)[0]
    licensed = rule.licensed_jurisdictions.get(market)
    if licensed is not None and lead.country and lead.country.upper() not in {c.upper() for c in licensed}:
        found.add(UNLICENSED)
    return sorted(found)


def on_applied(session: Session, ctx: EngineContext, applied: Applied, now: datetime) -> None:
    version, policy = ctx.book.active(session)
    rule, lead = policy.compliance, applied.lead
    if rule is None or lead is None or lead.state in {state.value for state in TERMINAL_STATES}:
        return
    criteria = matched_criteria(ctx.book, policy, rule, lead)
    if not criteria:
        return
    key = keys.compliance_hold_key(lead.id, criteria)
    if session.scalars(select(AuditRow.id).where(AuditRow.step_key == key)).first() is not None:
        return  # these criteria were decided already (held, and maybe cleared since)
    hold(session, ctx, version, policy, rule, lead, criteria, key, now)
    applied.held = True  # the patterns after this one leave it alone


def hold(session: Session, ctx: EngineContext, version: str, policy: Policy, rule: ComplianceRule, lead: Lead,
         criteria: list[str], key: str, now: datetime) -> AuditRow:
    status = crm_status_for(policy, lead.crm, LeadState.COMPLIANCE_HOLD)
    details: dict[str, Any] = {"criteria": criteria, "flags": list(lead.flags or []), "country": lead.country,
                               "market": lead.market, "from_state": lead.state, "from_status": lead.crm_status,
                               "crm_status": status}
    row = record_step(session, at=now, pattern=Pattern.COMPLIANCE, action=StepAction.HOLD, kind=rule.kind,
                      lead=lead, rule_id=rule.id, policy_version=version, step_key=key, details=details)
    item, _created = review_queue.open_item(
        session, queue=review_queue.COMPLIANCE, lead=lead, reason=HOLD_REASON, pattern=Pattern.COMPLIANCE.value,
        rule_id=rule.id, policy_version=version, details={"criteria": criteria, "audit_id": row.id}, now=now)
    if item.details.get("audit_id") != row.id:  # held already; new criteria join the open item
        item.details = {**item.details, "criteria": sorted({*item.details.get("criteria", []), *criteria})}
    for kind in clocks.KINDS:  # at once: the CRM status comes back by poll only later
        clock = clocks.open_clock_of(session, lead.id, kind)
        if clock is not None:
            clocks.pause(clock, ctx.book, session, now)
    row.details = {**row.details, "review_item_id": item.id}
    context = lead_context(session, ctx, lead)
    if status is not None and status != lead.crm_status:
        outbox.enqueue(session, key=keys.effect_key(key, "status"), now=now, audit_id=row.id,
                       request=LeadUpdate(lead=context, crm_status=status))
    summary = (f"{lead.name} ({lead.company}), {lead.email or 'no e-mail'}; market {lead.market or 'unknown'}, "
               f"country {lead.country or 'unknown'}, source {lead.source or 'unknown'}, owner "
               f"{context.owner_name or lead.owner_id or 'nobody'}")
    texts = {
        Persona.OWNER: f"Do not work this lead yet: it is on compliance hold ({', '.join(criteria)}). You will "
                       "be told when compliance clears it.",
        Persona.COMPLIANCE: f"Matched: {', '.join(criteria)}. {summary}. Decide with `sidecar compliance clear|"
                            f"reject {lead.crm_id} --crm {lead.crm} --reason ...` (review item #{item.id}).",
    }
    for persona in rule.notify:
        if persona is Persona.OWNER and needs_owner(lead, queue_ids(session)):
            continue  # nobody owns it yet: whoever is assigned at the clear is told then
        message = Message(kind=rule.kind, rule_id=rule.id, policy_version=version, due_at=now, window_s=0,
                          urgent=True, extra={"reason": texts.get(persona, texts[Persona.COMPLIANCE]),
                                              "criteria": ", ".join(criteria)})
        notify(session, ctx, policy, row, persona, lead, context, message, now)
    return row


def hold_status_update(session: Session, item_audit_id: int | None) -> OutboxRow | None:
    """The hold's own status write, if it is still on its way (later status writes wait for it)."""
    if item_audit_id is None:
        return None
    return session.scalars(select(OutboxRow).where(
        OutboxRow.audit_id == item_audit_id, OutboxRow.action == "update_lead",
        OutboxRow.status.in_(("pending", "in_flight")))).first()
