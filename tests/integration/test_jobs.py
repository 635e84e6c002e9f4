"""The jobs as the scheduler runs them: directory sync from CRM users, initial assignment in evaluate."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import jobs
from sidecar.domain import Crm, LeadSnapshot
from sidecar.jobs import Runtime
from sidecar.outbox import Ports
from sidecar.ports import ChangePage, Cursor, DirectoryUser
from sidecar.store.db import transaction
from sidecar.store.models import OutboxRow, Rep
from tests.support import FakeNotifier, FakeWriter, add_team, apply_policy, context, ingest, ny, policy_raw, snapshot


class Users:
    crm = Crm.SALESFORCE

    def __init__(self, users: list[DirectoryUser]) -> None:
        self.users = users

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        return iter(())

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        return []

    def read_users(self) -> list[DirectoryUser]:
        return self.users

    def record_url(self, crm_id: str) -> str:
        return crm_id


def test_directory_sync_deactivates_a_user_the_crm_deactivated(sessions: sessionmaker[Session],
                                                                tmp_path: Path) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions, reps=("r1", "r2"))
    file = tmp_path / "directory.yaml"
    file.write_text(yaml.safe_dump({"teams": [{"id": "us", "name": "Team us", "market": "TEST"}], "reps": [
        {"id": rep, "crm": "salesforce", "name": f"Rep {rep}", "email": f"{rep}@example.com", "team": "us",
         "role": "manager" if rep == "us-mgr" else "rep"} for rep in ("r1", "r2", "us-mgr")]}))
    users = [DirectoryUser("r1", "Rep r1", "r1@example.com"), DirectoryUser("r2", "Rep r2", "r2@example.com",
                                                                            active=False),
             DirectoryUser("us-mgr", "Manager us", "mgr@us.example"), DirectoryUser("r9", "New Hire", "r9@example.com")]
    rt = Runtime(sessions, context(), {"salesforce": Users(users)}, Ports(None, {}), directory_file=file)
    [result] = jobs.sync_directory(rt, ny(24, 9))
    assert result.deactivated == ["r2"] and result.unplaced == ["r9"]
    with transaction(sessions) as session:
        assert session.get(Rep, "r2").active is False and session.get(Rep, "r1").team_id == "us"


def test_evaluate_assigns_queue_owned_leads_when_the_policy_says_so(sessions: sessionmaker[Session]) -> None:
    raw = policy_raw(assignment={"enabled": True, "rules": [
        {"id": "assign.test", "when": {"market": "TEST"}, "team": "us"}]})
    apply_policy(sessions, raw, ny(1, 0))
    add_team(sessions, reps=("r1", "r2"))
    ctx = context()
    ingest(sessions, ctx, snapshot("00QQ", at=ny(24, 9), owner="00GQUEUE000001"))
    rt = Runtime(sessions, ctx, {}, Ports(FakeNotifier(), {"salesforce": FakeWriter()}))
    fired = jobs.evaluate(rt, ny(24, 9, 1))
    assert fired["lead_assigned"] == 1
    with transaction(sessions) as session:
        change = session.scalars(select(OutboxRow).where(OutboxRow.action == "change_owner")).one()
    assert change.payload["to_owner_id"] in ("r1", "r2") and change.payload["from_owner_id"] == "00GQUEUE000001"
