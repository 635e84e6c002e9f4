"""Migration 0003: leads remember which rule chose their intent, clocks which tier's ladder they follow;
clocks started before it keep the main ladder (NULL)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from sidecar.store.db import alembic_config, make_engine


def test_upgrade_adds_intent_rule_and_clock_ladder_and_downgrade_removes_them(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        config = alembic_config(engine)
        command.upgrade(config, "0002")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO leads (id, crm, crm_id, name, company, email, intent, state, crm_status, "
                              "flags, state_entered_at, crm_modified_at) VALUES (1, 'salesforce', '00Q1', 'A', 'B', "
                              "'', 'high', 'NEW', 'Open', '[]', '2026-11-24 13:00:00+00:00', "
                              "'2026-11-24 13:00:00+00:00')"))
        command.upgrade(config, "head")
        columns = {table: {c["name"] for c in inspect(engine).get_columns(table)} for table in ("leads", "clocks")}
        assert "intent_rule" in columns["leads"] and "ladder" in columns["clocks"]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT intent, intent_rule FROM leads")).one() == ("high", None)
        command.downgrade(config, "0002")
        assert "intent_rule" not in {c["name"] for c in inspect(engine).get_columns("leads")}
        assert "ladder" not in {c["name"] for c in inspect(engine).get_columns("clocks")}
        command.upgrade(config, "head")
    finally:
        engine.dispose()
