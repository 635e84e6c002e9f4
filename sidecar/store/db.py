"""Engine and session helpers, and running the migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from sidecar.store.fair_lock import FairRLock

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 5000  # another process (a `sidecar status`, `sidecar revert`) holding the write lock
_READ_ONLY = "sidecar_read_only"  # execution option: see reading()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling opens transactions lazily before DML and knows nothing of
    # SAVEPOINT, so a `begin_nested()` did not roll back with its outer transaction. SQLAlchemy's
    # documented pysqlite recipe ("Serializable isolation / Savepoints / Transactional DDL"): turn
    # the driver's handling off here and emit BEGIN ourselves in `_sqlite_begin`.
    dbapi_connection.isolation_level = None
    # WAL lets the web process read while the scheduler writes; busy_timeout rides out short locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN, where SQLite waits out busy_timeout. A deferred
    # transaction that reads first and writes later is refused at once ("database is locked",
    # busy_timeout not consulted) when another writer committed since its read began. Only
    # `reading()` begins deferred: it never writes, and under WAL a reader waits for nobody.
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


_writers_guard = threading.Lock()
_writers: dict[str, FairRLock] = {}


def sqlite_writer_lock(engine: Engine) -> FairRLock | None:
    """The lock every transaction of this process on this SQLite file holds; None on PostgreSQL.

    SQLite has one writer at a time per file. BEGIN IMMEDIATE alone makes a second writer wait
    only up to busy_timeout, and some jobs hold their transaction across a CRM call that may take
    longer (the webhook drain reads the announced leads inside it), so the scheduler's own threads
    would still see "database is locked" now and then. Queuing them on a lock in the process costs
    nothing SQLite would have allowed anyway (its writers are serial), waits as long as needed, and
    is fair to whoever came first (handed over in arrival order: sidecar.store.fair_lock);
    busy_timeout is then only for other processes. PostgreSQL has row locks and needs none of this.
    Reentrant, so a transaction opened inside another one in the same thread fails the way it
    always did (on the database) instead of hanging here.
    """
    if engine.dialect.name != "sqlite":
        return None
    key = engine.url.render_as_string(hide_password=False)
    with _writers_guard:
        return _writers.setdefault(key, FairRLock())


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    lock = sqlite_writer_lock(factory.kw["bind"])
    with lock if lock is not None else nullcontext(), factory() as session, session.begin():
        yield session


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that only reads (health checks, status pages). On SQLite it neither queues
    behind this process's writers nor takes the write lock, so a liveness probe answers while a
    job holds a long write transaction; it sees the last committed state. Do not write in it."""
    engine: Engine = factory.kw["bind"]
    bind = engine.execution_options(**{_READ_ONLY: True}) if engine.dialect.name == "sqlite" else engine
    with factory(bind=bind) as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    command.upgrade(alembic_config(engine), "head")
