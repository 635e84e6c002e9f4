"""Row ids handed out before the INSERT, so that a batch of new rows goes in as one bulk INSERT.

A decision needs its audit row's id at once (its effects and the breach note name it), and without
an id in hand every row is flushed on its own to learn it: a round trip per row. The tick reserves
the ids its batch will need in one go; rows then take them (`take`) and the batch is flushed in
bulk at commit. A row that finds no reserved id left is inserted the usual way.

PostgreSQL: ids are drawn from the table's sequence, so concurrent sidecars get distinct ones; an
id reserved but not used is a gap, as after any rollback. SQLite: the transaction holds the write
lock from BEGIN IMMEDIATE, so nobody else inserts before the commit, and the ids are max(id)+1
onwards, the very ids SQLite would have given (numbering unchanged, nothing wasted). For that to
hold, every row of a table with reserved ids must take one while any are left (`take`), which the
single place creating such rows (audit.record, outbox.enqueue) does.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import DeclarativeBase, Session

_RESERVED = "sidecar_reserved_ids"  # session.info: table name -> ids not taken yet, ascending


def reserve(session: Session, model: type[DeclarativeBase], count: int) -> None:
    """Reserve `count` more ids of `model`'s table for rows this transaction will add."""
    if count <= 0:
        return
    table = model.__tablename__
    reserved: list[int] = session.info.setdefault(_RESERVED, {}).setdefault(table, [])
    if session.get_bind().dialect.name == "postgresql":
        drawn = session.scalars(text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                                     "FROM generate_series(1, :n)"), {"table": table, "n": count})
        reserved.extend(sorted(int(i) for i in drawn))
        return
    start = (reserved[-1] if reserved else session.scalar(select(func.max(model.id))) or 0) + 1  # type: ignore[attr-defined]
    reserved.extend(range(start, start + count))


def take(session: Session, model: type[DeclarativeBase]) -> int | None:
    """The next reserved id of `model`'s table; None when none is left (the INSERT gives one)."""
    reserved: list[int] | None = session.info.get(_RESERVED, {}).get(model.__tablename__)
    return reserved.pop(0) if reserved else None
