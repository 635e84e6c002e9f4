"""Shared fixtures. `database_url` is a fresh, migrated database: a SQLite file by default, or a
fresh schema on the PostgreSQL server named by SIDECAR_TEST_DATABASE_URL (CI runs both)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sidecar.store.db import make_engine, migrate, session_factory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = ROOT / "config" / "policy.example.yaml"


def _postgres_url() -> str | None:
    return os.environ.get("SIDECAR_TEST_DATABASE_URL") or None


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    base = _postgres_url()
    if base is None:
        yield f"sqlite:///{tmp_path / 'sidecar.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)
