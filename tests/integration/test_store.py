from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sidecar.policy import validate_policy
from sidecar.policy.version import active_version, policy_of, record_version, version_of
from sidecar.store.db import migrate, transaction
from sidecar.store.models import AuditRow, Lead, PolicyVersion
from tests.conftest import EXAMPLE_POLICY

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_migrations_create_every_table_and_running_twice_is_harmless(engine: Engine) -> None:
    migrate(engine)  # second run: already at head
    tables = set(inspect(engine).get_table_names())
    assert {"leads", "lead_events", "reps", "rep_pto", "teams", "markets", "policy_versions", "clocks",
            "audit", "outbox", "sync_cursors", "alembic_version"} <= tables
    clock_indexes = {ix["name"] for ix in inspect(engine).get_indexes("clocks")}
    assert "ix_clocks_next_due_at" in clock_indexes


def test_times_round_trip_as_aware_utc(sessions: sessionmaker[Session]) -> None:
    kolkata = datetime(2026, 11, 25, 13, 30, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Kolkata"))
    with transaction(sessions) as session:
        session.add(Lead(crm="salesforce", crm_id="00Q1", state="NEW", crm_status="Open - Not Contacted",
                         state_entered_at=kolkata, crm_modified_at=T0))
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead)).one()
        assert lead.state_entered_at == datetime(2026, 11, 25, 13, 30, tzinfo=UTC)
        assert lead.state_entered_at.tzinfo is not None
        later = session.scalars(select(Lead).where(Lead.crm_modified_at >= T0 - timedelta(seconds=1))).all()
        assert len(later) == 1


def test_naive_datetimes_are_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(Exception, match="naive datetime"), transaction(sessions) as session:
        session.add(Lead(crm="hubspot", crm_id="1", state="NEW", crm_status="NEW",
                         state_entered_at=datetime(2026, 1, 1), crm_modified_at=T0))
        session.flush()


def test_lead_is_unique_per_crm_and_audit_step_key_is_unique(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        for _ in range(2):
            session.add(Lead(crm="hubspot", crm_id="7", state="NEW", crm_status="NEW",
                             state_entered_at=T0, crm_modified_at=T0))
        session.flush()
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        for _ in range(2):
            session.add(AuditRow(at=T0, kind="sla_breach", step_key="clock:1:step:1"))
        session.flush()


def test_policy_versions_same_content_same_row_changes_keep_old_rows(sessions: sessionmaker[Session]) -> None:
    raw = yaml.safe_load(EXAMPLE_POLICY.read_text())
    first = validate_policy(raw)
    with transaction(sessions) as session:
        v1 = record_version(session, first, "a.yaml", T0).version
        assert record_version(session, validate_policy(raw), "a.yaml", T0 + timedelta(hours=1)).version == v1
        assert session.scalar(select(func.count()).select_from(PolicyVersion)) == 1
    raw["windows"][0]["window"] = "3h"
    second = validate_policy(raw)
    with transaction(sessions) as session:
        v2 = record_version(session, second, "a.yaml", T0 + timedelta(hours=2)).version
        assert v2 != v1
        assert session.scalar(select(func.count()).select_from(PolicyVersion)) == 2
        active = active_version(session)
        assert active is not None and active.version == v2
        # the stored content rebuilds exactly the policy that was recorded
        old = session.get(PolicyVersion, v1)
        assert old is not None and version_of(policy_of(old)) == v1
        # going back to the old content re-activates the old version instead of adding a row
        record_version(session, first, "a.yaml", T0 + timedelta(hours=3))
        active = active_version(session)
        assert active is not None and active.version == v1
        assert session.scalar(select(func.count()).select_from(PolicyVersion)) == 2
