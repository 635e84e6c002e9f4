"""Who a lead's owner is, in kind: a person, a queue, or nobody.

Its own module because assignment and the patterns both ask, and assignment imports the patterns'
key shapes: keeping this question here keeps that import one-way.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.store import preloaded
from sidecar.store.models import Lead, Team

SALESFORCE_QUEUE_PREFIX = "00G"  # Salesforce owner ids: users start 005, queues 00G


def queue_ids(session: Session) -> set[str]:
    """The CRM queue ids the directory names as teams' ops queues (from the batch's teams when loaded)."""
    teams = preloaded.every(session, Team)
    if teams is not None:
        return {team.ops_queue_id for team in teams if team.ops_queue_id}
    return {queue for queue in session.scalars(select(Team.ops_queue_id)) if queue}


def needs_owner(lead: Lead, queues: set[str]) -> bool:
    """Unowned, or parked in a queue (a queue is not a person who will call)."""
    owner = lead.owner_id
    if not owner:
        return True
    return (lead.crm == "salesforce" and owner.startswith(SALESFORCE_QUEUE_PREFIX)) or owner in queues
