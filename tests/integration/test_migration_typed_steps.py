"""Migration 0002: typed columns on audit rows, and reassignments decided before it stay revertable."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from sidecar.store.db import alembic_config, make_engine


def test_upgrade_backfills_reassignments_and_downgrade_removes_the_columns(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        config = alembic_config(engine)
        command.upgrade(config, "0001")  # the schema before typed steps
        rows = [(1, "sla_breach_auto_reassign", '{"from_owner": "r1", "to_owner": "r2"}'),
                (2, "sla_breach_auto_reassign", '{"from_owner": "r1", "to_owner": null}'),  # queued
                (3, "reassignment_reverted", '{"from_owner": "r2", "to_owner": "r1"}'),
                (4, "sla_breach", '{}')]
        with engine.begin() as conn:
            for row_id, kind, details in rows:
                conn.execute(text("INSERT INTO audit (id, at, kind, actor, details) VALUES "
                                  "(:id, '2026-11-24 13:00:00+00:00', :kind, 'system', :details)"),
                             {"id": row_id, "kind": kind, "details": details})
        command.upgrade(config, "head")
        with engine.connect() as conn:
            typed = conn.execute(text("SELECT id, pattern, action, to_owner FROM audit ORDER BY id")).all()
        assert [tuple(row) for row in typed] == [(1, "sla", "reassign", "r2"), (2, None, None, None),
                                                 (3, "revert", "revert", "r1"), (4, None, None, None)]
        command.downgrade(config, "0001")
        assert not {"pattern", "action", "to_owner"} & {c["name"] for c in inspect(engine).get_columns("audit")}
        command.upgrade(config, "head")
    finally:
        engine.dispose()
