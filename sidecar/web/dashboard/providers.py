"""Queues and outcomes the dashboard and /api show, each from one small provider function.

A provider takes (session, now) and returns rows; an empty section shows its empty-state text.
The queues are the open review items (ops review: stuck leads; compliance: held leads), the
outcomes the rows `sidecar outcomes` computes. A new list is: write a provider, put it in the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import review_queue
from sidecar.data_quality import unknown_values
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import Policy
from sidecar.store.models import Lead, LeadOutcome


@dataclass(frozen=True)
class QueueItem:
    crm: str
    crm_id: str
    lead: str
    reason: str
    since: datetime
    waiting_s: float  # how long it has waited for a decision (a queue's aging)


@dataclass(frozen=True)
class QueueView:
    name: str
    empty: str  # shown when there is nothing, e.g. "no review queue yet"
    items: list[QueueItem] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    crm: str
    crm_id: str
    lead: str
    outcome: str  # qualified | booked | lost ...
    at: datetime


QueueProvider = Callable[[Session, datetime], QueueView]
OutcomeProvider = Callable[[Session, datetime], list[Outcome]]


def _queue(queue: str, name: str, empty: str) -> QueueProvider:
    """Open items of one review queue (sidecar.review_queue), oldest first."""
    def provider(session: Session, now: datetime) -> QueueView:
        rows = review_queue.items(session, queue)
        leads = {lead.id: lead for lead in session.scalars(
            select(Lead).where(Lead.id.in_([row.lead_id for row in rows])))}
        items = []
        for row in rows:
            lead = leads[row.lead_id]
            items.append(QueueItem(lead.crm, lead.crm_id, lead.name or lead.crm_id, row.reason, row.opened_at,
                                   (now - row.opened_at).total_seconds()))
        return QueueView(name, empty, items)
    return provider


def _unknown_crm_values(session: Session, now: datetime) -> QueueView:
    """One row per CRM value the policy or directory does not know (sidecar.data_quality): the lead
    column counts the leads carrying it, the id is one of them."""
    try:
        policy: Policy | None = PolicyBook().active(session)[1]
    except LookupError:
        policy = None
    items = [QueueItem(value.crm, value.example_crm_id, f"{value.leads} lead" + ("s" if value.leads != 1 else ""),
                       f"unknown {value.what} {value.value[:60]!r}: {value.effect}", value.since or now,
                       (now - value.since).total_seconds() if value.since else 0.0)
             for value in unknown_values(session, policy)]
    return QueueView("unknown CRM values", "every market, source, status and owner the CRM sends is known to "
                                           "the policy and the directory", items)


QUEUE_PROVIDERS: list[QueueProvider] = [
    _queue(review_queue.OPS_REVIEW, "ops review", "no lead waits for ops review: leads stuck 4x their window "
                                                  "are listed here"),
    _queue(review_queue.COMPLIANCE, "compliance", "no lead is on compliance hold: held leads are listed here, "
                                                  "oldest first"),
    _unknown_crm_values,
]
OUTCOME_EMPTY = "no outcomes recorded yet: `sidecar outcomes export` computes them from the audit"
# The first match names a lead's outcome, most telling first.
_OUTCOME_ORDER = ("booked", "qualified", "disqualified", "closed_lost_due_to_delay", "recovered_after_escalation",
                  "contacted", "no_response")


def _stored_outcomes(session: Session, _now: datetime) -> list[Outcome]:
    """The outcome rows `sidecar outcomes` last computed (rebuilding them all here would make every
    page view cost a pass over the audit)."""
    rows = session.scalars(select(LeadOutcome).order_by(LeadOutcome.lead_id)).all()
    names = {lead.id: lead.name for lead in session.scalars(
        select(Lead).where(Lead.id.in_([row.lead_id for row in rows])))}
    return [Outcome(row.crm, row.crm_id, names.get(row.lead_id) or row.crm_id,
                    next((name for name in _OUTCOME_ORDER if getattr(row, name)), "open"),
                    row.first_response_at or row.arrived_at or row.updated_at)
            for row in rows]


OUTCOME_PROVIDER: OutcomeProvider = _stored_outcomes


def queues(session: Session, now: datetime) -> list[QueueView]:
    return [provider(session, now) for provider in QUEUE_PROVIDERS]


def outcomes(session: Session, now: datetime) -> list[Outcome]:
    return OUTCOME_PROVIDER(session, now)
