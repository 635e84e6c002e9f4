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

from typing import Any, TypeVar

from sqlalchemy import bindparam, event, insert, update
from sqlalchemy.orm import DeclarativeBase, Session, attributes, class_mapper

_BATCH = "sidecar_bulk_batch"
Row = TypeVar("Row", bound=DeclarativeBase)


class _Batch:
    def __init__(self) -> None:
        self.queued: dict[type[DeclarativeBase], list[Any]] = {}  # model -> rows not written yet
        self.written: list[Any] = []  # rows written, watched for later changes

    def write(self, session: Session) -> None:
        if not self.queued and not self.written:
            return
        connection = session.connection()
        changed: dict[type[DeclarativeBase], list[Any]] = {}
        for row in self.written:
            state = attributes.instance_state(row)
            if state.modified:
                changed.setdefault(type(row), []).append(row)
                state._commit_all(state.dict)  # written now: only a further change is written again
        for model, rows in changed.items():
            columns = _columns(model)
            key = columns[0]  # the primary key, `id`
            statement = update(model.__table__).where(  # type: ignore[attr-defined]
                model.__table__.c[key] == bindparam("_key"))  # type: ignore[attr-defined]
            connection.execute(statement, [{"_key": row.__dict__[key],
                                            **{c: row.__dict__.get(c) for c in columns[1:]}} for row in rows])
        queued, self.queued = self.queued, {}
        for model, rows in queued.items():
            columns = _columns(model)
            connection.execute(insert(model.__table__),  # type: ignore[attr-defined]
                               [{c: row.__dict__.get(c) for c in columns} for row in rows])
            self.written.extend(rows)


_COLUMNS: dict[type[DeclarativeBase], list[str]] = {}


def _columns(model: type[DeclarativeBase]) -> list[str]:
    """The model's column attributes, primary key first (the names Core's insert takes)."""
    if model not in _COLUMNS:
        mapper = class_mapper(model)
        keys = [column.key for column in mapper.primary_key]
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


def is_open(session: Session) -> bool:
    return _BATCH in session.info


def new_row(session: Session, model: type[Row], values: dict[str, Any]) -> Row:
    """A transient `model` row holding `values` (its id included), queued for the batch's insert.

    Built without the ORM's per-attribute events: its values go straight into the instance's
    dict, the way the ORM's own loader fills a row read from the database. `values` names every
    column the ORM path sets; any other column is inserted as NULL (and reads None).
    """
    row = class_mapper(model).class_manager.new_instance()
    row.__dict__.update(values)
    session.info[_BATCH].queued.setdefault(model, []).append(row)
    return row
