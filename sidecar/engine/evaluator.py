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

from sidecar import audit
from sidecar.engine import clocks
from sidecar.engine.patterns import clock_handler, keys
from sidecar.engine.patterns.shared import EngineContext
from sidecar.outbox import leads_awaiting_owner_change
from sidecar.store import bulk, ids, preloaded
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, Rep, Team

log = logging.getLogger(__name__)


def _due(session: Session, now: datetime, batch: int, skip: set[int]) -> list[Clock]:
    query = (select(Clock).where(Clock.next_due_at <= now, Clock.status == "open")
             .order_by(Clock.next_due_at, Clock.id).limit(batch + len(skip)))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [clock for clock in session.scalars(query) if clock.id not in skip][:batch]


def _preload(session: Session, due: list[Clock]) -> list[Lead | Team | Rep]:
    """Load the batch's leads, their owners, their teams and the teams' managers in three queries.

    Every step reads these (its lead, the owner it tells, the team channel); one query each for the
    whole batch instead of several per step. The session's identity map holds its objects weakly,
    so the returned list keeps them alive for the batch: `session.get` then answers from memory.

    On PostgreSQL the leads are locked here, skipping those another transaction holds (an apply of
    a CRM change locks the lead, then its clocks): the tick then never waits for a lead while it
    holds clocks, so the two cannot deadlock; a skipped lead's clocks wait for the next tick.
    """
    query = select(Lead).where(Lead.id.in_({clock.lead_id for clock in due}))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, key_share=True)  # FOR NO KEY UPDATE, as an UPDATE
    leads = list(session.scalars(query))
    teams = list(session.scalars(select(Team)))  # a handful of rows: all of them
    rep_ids = {lead.owner_id for lead in leads if lead.owner_id} | {t.manager_id for t in teams if t.manager_id}
    reps = list(session.scalars(select(Rep).where(Rep.id.in_(rep_ids)))) if rep_ids else []
    loaded: list[Lead | Team | Rep] = [*leads, *teams, *reps]
    preloaded.keep(session, loaded)
    return loaded


def _note_new_steps(session: Session, ctx: EngineContext, due: list[Clock]) -> None:
    """Tell the audit which step keys of these clocks are not recorded yet (one query for the
    batch instead of one per step): every step still to come and, when a breach (100 %) is still
    to come, the "ignored" companion of each warning before it. A key left out is only looked up
    on its own when recorded, so this may omit but never wrongly include."""
    candidates: set[str] = set()
    ladders: dict[tuple[str, str, str | None], list[float] | None] = {}  # a burst shares a handful
    for clock in due:
        if clock.kind not in clocks.KINDS:
            continue
        which = (clock.policy_version, clock.kind, clock.ladder)
        if which not in ladders:
            try:
                ladders[which] = clocks.thresholds(ctx.book.get(session, which[0]), which[1], which[2])
            except Exception:  # e.g. its policy version is gone: that clock fails alone (and is logged) when it fires
                ladders[which] = None
        steps = ladders[which]
        if steps is None:
            continue
        candidates.update(keys.step_key(clock.id, index) for index in range(clock.steps_fired, len(steps)))
        if any(at >= 1.0 for at in steps[clock.steps_fired:]):
            candidates.update(keys.step_key(clock.id, index, "ignored")
                              for index, at in enumerate(steps) if at < 1.0)
    audit.note_absent(session, candidates)


def tick(sessions: sessionmaker[Session], ctx: EngineContext, now: datetime,
         batch: int = 200) -> Counter[str]:
    """Fire due steps; returns how many of each audit kind were written.

    A batch is decided in one go; should any clock of it fail, the batch is undone and decided
    again clock by clock, each in its own savepoint, so that the failing one is reported and left
    for the next tick while the others fire. (A savepoint per clock on every batch costs a third
    of a burst's time; failures are rare.)
    """
    fired: Counter[str] = Counter()
    failed: set[int] = set()
    held: set[int] = set()  # clocks of leads whose owner change has not settled, or being applied: later
    careful = False
    while True:
        decided: Counter[str] = Counter()
        try:
            with transaction(sessions) as session:
                due = _due(session, now, batch, failed | held)
                loaded = _preload(session, due) if due else []
                _note_new_steps(session, ctx, due)
                lead_ids = {clock.lead_id for clock in due}
                locked_elsewhere = lead_ids - {lead.id for lead in loaded if isinstance(lead, Lead)}
                awaiting = leads_awaiting_owner_change(session, lead_ids) | locked_elsewhere
                # Ids for one decision and one effect per clock to fire (a warning to its owner, the
                # common step), one query each: the batch is then inserted in bulk at commit instead
                # of a flush per decision. More rows than reserved simply get their ids on insert.
                firing = sum(1 for clock in due if clock.lead_id not in awaiting)
                ids.reserve(session, AuditRow, firing)
                ids.reserve(session, OutboxRow, firing)
                if not careful:  # clock by clock, savepoints undo a failed clock's rows: the ORM path
                    bulk.open_batch(session)
                    bulk.watch(session, due)  # their steps_fired and next_due_at: one UPDATE per batch
                for clock in due:
                    if clock.lead_id in awaiting:  # the CRM may not show the owner this clock is about
                        held.add(clock.id)
                    elif not careful:
                        _fire(session, ctx, clock, now, decided)
                    else:
                        try:
                            with session.begin_nested():  # one clock's failure must not undo the others
                                _fire(session, ctx, clock, now, decided)
                        except OperationalError:
                            raise  # the database, not this clock (see patterns.registry.on_applied): the tick retries
                        except Exception:  # reported, and the clock is retried on the next tick
                            log.exception("clock %s could not be evaluated", clock.id)
                            failed.add(clock.id)
                del loaded
        except Exception:
            if careful:
                raise
            careful = True  # undone: decide the same batch again, clock by clock
            continue
        careful = False
        fired.update(decided)
        if len(due) < batch:
            return fired


def _fire(session: Session, ctx: EngineContext, clock: Clock, now: datetime, fired: Counter[str]) -> None:
    """Every step of `clock` that is due by `now`, in order (several after downtime, marked late)."""
    lead = preloaded.get(session, Lead, clock.lead_id)
    assert lead is not None
    fire = clock_handler(clock.kind)  # "sla" -> the ladder; "stuck" -> the stuck levels
    while clock.status == "open" and clock.next_due_at is not None and clock.next_due_at <= now:
        fired[fire(session, ctx, clock, lead, now).kind] += 1
