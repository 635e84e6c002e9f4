"""Which pattern handles what: clock-driven handlers by `Clock.kind`, event-driven ones in a list."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sidecar import audit
from sidecar.engine.patterns.shared import EngineContext
from sidecar.store.models import AuditRow, Clock, Lead

if TYPE_CHECKING:
    from sidecar.ingest import Applied

log = logging.getLogger(__name__)

# Fire the clock's next due step: audit it, enqueue its effects, advance or close the clock.
ClockHandler = Callable[[Session, EngineContext, Clock, Lead, datetime], AuditRow]
# React to one applied CRM snapshot (a new lead, a changed field or flag, a state change).
EventHandler = Callable[[Session, EngineContext, "Applied", datetime], None]

_CLOCK_HANDLERS: dict[str, ClockHandler] = {}
_EVENT_HANDLERS: dict[str, EventHandler] = {}


def register_clock(kind: str, handler: ClockHandler) -> None:
    """`handler` fires the due steps of clocks whose `Clock.kind` is `kind` (one handler per kind)."""
    if kind in _CLOCK_HANDLERS and _CLOCK_HANDLERS[kind] is not handler:
        raise ValueError(f"clock kind {kind!r} already has a handler")
    _CLOCK_HANDLERS[kind] = handler


def register_event(name: str, handler: EventHandler) -> None:
    """`handler` runs after every applied snapshot; `name` labels its failures in the audit."""
    if name in _EVENT_HANDLERS and _EVENT_HANDLERS[name] is not handler:
        raise ValueError(f"event handler {name!r} already registered")
    _EVENT_HANDLERS[name] = handler


def clock_handler(kind: str) -> ClockHandler:
    try:
        return _CLOCK_HANDLERS[kind]
    except KeyError:
        raise LookupError(f"no pattern handles clocks of kind {kind!r}") from None


def on_applied(session: Session, ctx: EngineContext, applied: Applied, now: datetime, *,
               isolate: bool = True) -> None:
    """Run every event handler on one applied snapshot, each in its own savepoint: a failing pattern
    is audited (`pattern_failed`) and never blocks ingest or the other patterns.

    `isolate=False`: no savepoints, a failure propagates. For a caller that holds a savepoint of
    its own around many snapshots and, should anything fail, rolls it back and applies them again
    one at a time, isolated (`sync.apply_snapshots`): a savepoint per handler and snapshot was a
    sizeable share of applying a lead (each one flushes and snapshots the session)."""
    lead = applied.lead
    if lead is None:  # a merge of a lead never tracked here: nothing to react to
        return
    if not isolate:
        for handler in _EVENT_HANDLERS.values():
            handler(session, ctx, applied, now)
        return
    for name, handler in _EVENT_HANDLERS.items():
        try:
            with session.begin_nested():
                handler(session, ctx, applied, now)
        except OperationalError:
            # The database itself (disk full, connection lost): SQLite has already rolled the whole
            # transaction back, so nothing may be written after it (it would commit on its own).
            raise
        except Exception as exc:  # reported in the audit and the log; the next snapshot retries
            applied.held = None  # a hold it decided may be rolled back with it: look again
            log.exception("pattern %s failed on lead %s", name, lead.crm_id)
            audit.record(session, at=now, kind="pattern_failed", lead=lead,
                         details={"pattern": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
