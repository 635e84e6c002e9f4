"""The tick's new audit and outbox rows, inserted per batch with one Core executemany per table.

A burst decides thousands of steps; each writes an audit row and one or more outbox rows. Through
the ORM every row pays for instrumented construction, `Session.add` and the unit of work's flush
bookkeeping, which was most of a step's cost. While a batch is open here (`open_batch`), a new
row whose id was reserved (sidecar.store.ids) is built without instrumentation (`new_row`) and
queued; the queue is written with `insert(table)` and a list of dicts:

- before any statement the session executes (a query may look for these rows: an existing step
  key, an effect's prerequisite, a hand-over's task), before every ORM flush (an ORM row may name
  a queued one), and before the commit. So the database always holds them when anything looks.
- A row changed after it was written (stuck steps add their review item's id to the decision's
  details) is written again with an UPDATE at the next of those points, as the ORM would have.

The rows returned are real model instances, transient (never in the session): callers read their
ids, keys and payloads as before. A batch that is undone is simply dropped with its session; the
tick's clock-by-clock retry uses the ORM path (no batch open), whose savepoints undo a clock alone.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, event, insert, update
from sqlalchemy.orm import DeclarativeBase, Session, attributes, class_mapper

from sidecar.store.models import Base

_BATCH = "sidecar_bulk_batch"
Row = TypeVar("Row", bound=DeclarativeBase)


class _Batch:
    def __init__(self) -> None:
        self.queued: dict[type[DeclarativeBase], list[Any]] = {}  # model -> rows not written yet
        self.watched: list[Any] = []  # rows in the database (written here, or the batch's clocks): changes

    def write(self, session: Session) -> None:
        if not self.queued and not self.watched:
            return
        connection = session.connection()
        changed: dict[tuple[type[DeclarativeBase], tuple[str, ...]], list[Any]] = {}
        for row in self.watched:
            state = attributes.instance_state(row)
            if state.modified and state.committed_state:
                changed.setdefault((type(row), tuple(sorted(state.committed_state))), []).append(row)
        for (model, columns), rows in changed.items():
            key = _columns(model)[0]  # the primary key, `id`
            table = _table(model)
            connection.execute(update(table).where(table.c[key] == bindparam("_key")),
                               [{"_key": row.__dict__[key], **{c: row.__dict__[c] for c in columns}} for row in rows])
            for row in rows:
                # Written: as after an ORM flush, only a further change is written again (and the
                # ORM's own flush finds nothing left to write for the batch's clocks).
                attributes.instance_state(row)._commit_all(row.__dict__, session.identity_map)
        queued, self.queued = self.queued, {}
        # Parents first (decisions before the effects that name them), whatever was queued first.
        for model, rows in sorted(queued.items(), key=lambda item: _ORDER.index(_table(item[0]))):
            names = _columns(model)
            connection.execute(insert(_table(model)),
                               [{c: row.__dict__.get(c) for c in names} for row in rows])
            self.watched.extend(rows)


_COLUMNS: dict[type[DeclarativeBase], list[str]] = {}
_MANAGERS: dict[type[DeclarativeBase], Any] = {}  # class_mapper() per row costs more than the row


def _table(model: type[DeclarativeBase]) -> Table:
    return cast(Table, model.__table__)


_ORDER = Base.metadata.sorted_tables  # every table after those its foreign keys name


def _columns(model: type[DeclarativeBase]) -> list[str]:
    """The model's column attributes, primary key first (the names Core's insert takes)."""
    if model not in _COLUMNS:
        mapper = class_mapper(model)
        keys = [str(column.key) for column in mapper.primary_key]
        _COLUMNS[model] = keys + [prop.key for prop in mapper.column_attrs if prop.key not in keys]
    return _COLUMNS[model]


def open_batch(session: Session) -> None:
    """Queue this session's new audit and outbox rows from now on (see the module's docstring)."""
    if _BATCH in session.info:
        return
    batch = session.info[_BATCH] = _Batch()

    def before_statement(state: Any) -> None:
        batch.write(session)

    def before_flush(flushing: Session, context: Any, instances: Any) -> None:
        batch.write(session)

    event.listen(session, "do_orm_execute", before_statement)
    event.listen(session, "before_flush", before_flush)
    event.listen(session, "before_commit", lambda committing: batch.write(session))


def watch(session: Session, rows: list[Any]) -> None:
    """Write the changes to these rows (loaded by the session) with the batch, one UPDATE per set of
    changed columns, instead of the ORM flush's per-row bookkeeping."""
    session.info[_BATCH].watched.extend(rows)


def is_open(session: Session) -> bool:
    return _BATCH in session.info


def new_row(session: Session, model: type[Row], values: dict[str, Any]) -> Row:
    """A transient `model` row holding `values` (its id included), queued for the batch's insert.

    Built without the ORM's per-attribute events: its values go straight into the instance's
    dict, the way the ORM's own loader fills a row read from the database. `values` names every
    column the ORM path sets; any other column is inserted as NULL (and reads None).
    """
    manager = _MANAGERS.get(model)
    if manager is None:
        manager = _MANAGERS[model] = class_mapper(model).class_manager
    row = manager.new_instance()
    row.__dict__.update(values)
    session.info[_BATCH].queued.setdefault(model, []).append(row)
    return row
