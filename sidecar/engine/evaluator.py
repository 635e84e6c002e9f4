"""The tick: fire every clock step that is due (by the pattern registered for its kind), and nothing else.

Cost depends on how many clocks are due (`next_due_at <= now`, indexed), never on how many leads
are open. A clock that missed several steps (the sidecar was down) fires each once, in order,
marked late. A lead whose owner change is still unsettled (pending, or in flight when a sidecar
died) is left alone until it settles: its steps then fire late rather than on a stale owner. On
PostgreSQL due clocks are claimed with FOR UPDATE SKIP LOCKED, so several sidecars can tick at once
and each step is still decided exactly once.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.patterns import clock_handler
from sidecar.engine.patterns.shared import EngineContext
from sidecar.outbox import leads_awaiting_owner_change
from sidecar.store.db import transaction
from sidecar.store.models import Clock, Lead

log = logging.getLogger(__name__)


def _due(session: Session, now: datetime, batch: int, skip: set[int]) -> list[Clock]:
    query = (select(Clock).where(Clock.next_due_at <= now, Clock.status == "open")
             .order_by(Clock.next_due_at, Clock.id).limit(batch + len(skip)))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [clock for clock in session.scalars(query) if clock.id not in skip][:batch]


def tick(sessions: sessionmaker[Session], ctx: EngineContext, now: datetime,
         batch: int = 200) -> Counter[str]:
    """Fire due steps; returns how many of each audit kind were written."""
    fired: Counter[str] = Counter()
    failed: set[int] = set()
    held: set[int] = set()  # clocks of leads whose owner change has not settled: decided later
    while True:
        with transaction(sessions) as session:
            due = _due(session, now, batch, failed | held)
            awaiting = leads_awaiting_owner_change(session, {clock.lead_id for clock in due})
            for clock in due:
                if clock.lead_id in awaiting:  # the CRM may not show the owner this clock is about
                    held.add(clock.id)
                    continue
                try:
                    with session.begin_nested():  # one clock's failure must not undo the others
                        lead = session.get(Lead, clock.lead_id)
                        assert lead is not None
                        fire = clock_handler(clock.kind)  # "sla" -> the ladder; later "stuck", ...
                        while (clock.status == "open" and clock.next_due_at is not None
                               and clock.next_due_at <= now):
                            fired[fire(session, ctx, clock, lead, now).kind] += 1
                except OperationalError:
                    raise  # the database, not this clock (see patterns.registry.on_applied): the tick retries
                except Exception:  # reported, and the clock is retried on the next tick
                    log.exception("clock %s could not be evaluated", clock.id)
                    failed.add(clock.id)
        if len(due) < batch:
            return fired
