"""Rows the tick (or the webhook drain) loaded for its batch, found by a dict look-up instead of `Session.get`.

The tick reads each due clock's lead, the lead's owner and team, and the team's manager several
times per step; it loads them for the whole batch in a few queries (evaluator._preload). Even
answered from the identity map, `Session.get` costs tens of microseconds a call, a sizeable share
of a step in a burst. `get` answers from the batch's dict first; anything else (a rep not in the
batch, or outside a tick) goes to `Session.get` as before. The objects are the session's own, so
both ways return the very same instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import DeclarativeBase, Session

_ROWS = "sidecar_preloaded_rows"
_ALL = "sidecar_preloaded_tables"  # model -> every row of it, loaded once for the batch
Row = TypeVar("Row", bound=DeclarativeBase)


def keep(session: Session, rows: Iterable[DeclarativeBase]) -> None:
    """Remember `rows` (loaded by `session`) for this transaction's look-ups by primary key."""
    table: dict[tuple[type[Any], Any], Any] = session.info.setdefault(_ROWS, {})
    for row in rows:
        identity = inspect(row).identity
        if identity is not None and len(identity) == 1:
            table[(type(row), identity[0])] = row


def keep_all(session: Session, model: type[Row], rows: list[Row]) -> None:
    """Remember that `rows` are every row of `model` (a small table, e.g. the teams), for `every`."""
    keep(session, rows)
    session.info.setdefault(_ALL, {})[model] = rows


def every(session: Session, model: type[Row]) -> list[Row] | None:
    """Every row of `model` as `keep_all` loaded them in this transaction; None when it did not."""
    rows: list[Row] | None = session.info.get(_ALL, {}).get(model)
    return rows


def get(session: Session, model: type[Row], key: Any) -> Row | None:
    """`session.get(model, key)`, from the batch's rows when they hold it."""
    row: Row | None = session.info.get(_ROWS, {}).get((model, key))
    return row if row is not None else session.get(model, key)
