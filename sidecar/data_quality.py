"""CRM values the policy or the directory does not know, reported once per value.

A lead with an unknown market or source still gets a clock (the policy's default market and the
catch-all windows apply), a status the state map does not list is stored as UNMAPPED (no clock runs
on it), and an owner id the directory does not know (a Salesforce queue, 00G..., that is no team's
ops queue, or a HubSpot owner id missing from the owners list) cannot be messaged. None of these
block anything; an admin fixes the policy, the field map or the directory, and this list tells them
what to add. Computed from the store at read time: one line per (what, crm, value), with how many
leads carry it and one of them as an example, so a value seen on 5,000 leads is still one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from sidecar.engine.ownership import queue_ids
from sidecar.ingest import UNMAPPED
from sidecar.policy.model import Policy
from sidecar.store.models import Lead, Rep

_EFFECT = {
    "market": "the policy's default market applies",
    "source": "windows for any source apply",
    "status": "stored as UNMAPPED: no clock runs until it is mapped in states",
    "owner": "not in the directory: nobody is messaged for these leads",
}


@dataclass(frozen=True)
class UnknownValue:
    what: str  # market | source | status | owner
    crm: str
    value: str
    leads: int
    example_crm_id: str  # one lead carrying it (the oldest)
    since: datetime | None  # when the oldest such lead arrived (None: the CRM gave no creation time)

    @property
    def effect(self) -> str:
        return _EFFECT[self.what]


def known_sources(policy: Policy) -> set[str]:
    named = {rule.source for rule in policy.windows if rule.source != "*"}
    return named | {source for rule in policy.intent.rules for source in rule.sources}


def unknown_values(session: Session, policy: Policy | None) -> list[UnknownValue]:
    """Every unknown value, by kind then number of leads (most first)."""
    found: list[UnknownValue] = []
    if policy is not None:
        found += _grouped(session, "market", Lead.market, Lead.market.not_in(list(policy.markets)))
        sources = known_sources(policy)
        if sources:  # a policy that names no source has no opinion on them
            found += _grouped(session, "source", Lead.source, Lead.source.not_in(sorted(sources)))
    found += _grouped(session, "status", Lead.crm_status, Lead.state == UNMAPPED)
    known_owners = set(session.scalars(select(Rep.id))) | queue_ids(session)
    found += _grouped(session, "owner", Lead.owner_id, Lead.owner_id.not_in(sorted(known_owners)))
    return found


def _grouped(session: Session, what: str, column: InstrumentedAttribute[str | None],
             condition: ColumnElement[bool]) -> list[UnknownValue]:
    rows = session.execute(
        select(Lead.crm, column, func.count(), func.min(Lead.created_at), func.min(Lead.crm_id))
        .where(column.is_not(None), column != "", condition)
        .group_by(Lead.crm, column).order_by(func.count().desc(), Lead.crm, column)).all()
    return [UnknownValue(what, crm, str(value), int(n), str(example), since) for crm, value, n, since, example in rows]
