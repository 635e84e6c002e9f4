"""The directory file: every mistake at once, content versions, CRM user sync, availability table."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.directory import (
    Directory,
    DirectoryError,
    add_pto,
    apply_directory,
    directory_version,
    load_directory,
    parse_directory,
    show_directory,
)
from sidecar.directory_sync import sync_users
from sidecar.engine.routing import choose_new_owner
from sidecar.ports import DirectoryUser
from sidecar.store.db import transaction
from sidecar.store.models import Lead, Rep, RepPto, Team
from tests.support import apply_policy, context, ingest, ny, policy_raw, snapshot

ROOT = Path(__file__).resolve().parents[2]


def directory_raw() -> dict[str, Any]:
    """Team `us` (TEST market: New York 08:00-18:00) with a manager and four reps."""
    reps = [{"id": rid, "crm": "salesforce", "name": f"Rep {rid}", "email": f"{rid}@example.com", "team": "us",
             "capacity": 2} for rid in ("r1", "r2", "r3", "r4")]
    reps.append({"id": "mgr", "crm": "salesforce", "name": "Manager", "email": "mgr@example.com", "team": "us",
                 "role": "manager"})
    return {"teams": [{"id": "us", "name": "US", "market": "TEST", "manager": "mgr", "slack_channel": "#us"}],
            "reps": reps}


def write(tmp_path: Path, raw: dict[str, Any], name: str = "directory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def setup(sessions: sessionmaker[Session]) -> tuple[str, Directory]:
    version = apply_policy(sessions, policy_raw(), ny(1, 0))
    directory = parse_directory(directory_raw())
    with transaction(sessions) as session:
        apply_directory(session, directory, context().book.get(session, version))
    return version, directory


def test_every_mistake_is_reported_at_once_with_its_key_and_a_fix(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    version = apply_policy(sessions, policy_raw(), ny(1, 0))
    raw = directory_raw()
    raw["teams"].append({"id": "mars", "name": "Mars", "market": "MARS", "manager": "r1"})  # 2 mistakes
    raw["reps"][1]["team"] = "nowhere"
    raw["reps"][2]["capacity"] = -1
    raw["reps"][3]["pto"] = [{"from": "2026-11-27", "to": "2026-11-20"}]
    raw["reps"].append(dict(raw["reps"][0]))  # r1 again
    directory = load_directory(write(tmp_path, raw))
    with transaction(sessions) as session, pytest.raises(DirectoryError) as caught:
        apply_directory(session, directory, context().book.get(session, version))
    keys = [problem.key for problem in caught.value.problems]
    assert keys == ["teams[1].market", "teams[1].manager", "reps[1].team", "reps[2].capacity", "reps[3].pto[0]",
                    "reps[5].id"]
    assert all(problem.fix for problem in caught.value.problems)
    assert "manager r1 is a rep of team 'us'" in str(caught.value)
    with transaction(sessions) as session:  # nothing was half-applied
        assert session.scalars(select(Team)).all() == []


def test_shape_errors_are_reported_together_with_key_paths(tmp_path: Path) -> None:
    raw = directory_raw()
    del raw["reps"][0]["email"]
    raw["reps"][2]["role"] = "boss"
    with pytest.raises(DirectoryError) as caught:
        load_directory(write(tmp_path, raw))
    assert [problem.key for problem in caught.value.problems] == ["reps[0].email", "reps[2].role"]


def test_same_content_same_version_changed_content_new_version(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    raw = directory_raw()
    first = load_directory(write(tmp_path, raw, "a.yaml"))
    # Reordered entries and different YAML layout are the same directory.
    reordered = {"reps": list(reversed(raw["reps"])), "teams": raw["teams"]}
    path = tmp_path / "b.yaml"
    path.write_text("# a comment\n" + yaml.safe_dump(reordered, default_flow_style=True), encoding="utf-8")
    assert directory_version(load_directory(path)) == directory_version(first)
    raw["reps"][0]["capacity"] = 3
    changed = load_directory(write(tmp_path, raw, "c.yaml"))
    assert directory_version(changed) != directory_version(first)
    version = apply_policy(sessions, policy_raw(), ny(1, 0))
    with transaction(sessions) as session:
        assert apply_directory(session, changed, context().book.get(session, version)) == directory_version(changed)


def test_the_example_directory_is_valid_against_the_example_policy(sessions: sessionmaker[Session]) -> None:
    version = apply_policy(sessions, policy_raw(), ny(1, 0))
    directory = load_directory(ROOT / "config" / "directory.example.yaml")
    with transaction(sessions) as session:
        apply_directory(session, directory, context().book.get(session, version))
        assert session.get(Team, "india-inside") is not None
        assert len(session.scalars(select(RepPto)).all()) == 1


def _users(**overrides: DirectoryUser) -> list[DirectoryUser]:
    """The CRM's view of the directory above: same names and emails, everybody active."""
    users = {rep["id"]: DirectoryUser(id=rep["id"], name=rep["name"], email=rep["email"])
             for rep in directory_raw()["reps"]}
    users.update(overrides)
    return list(users.values())


def test_deactivated_crm_user_becomes_inactive_and_is_never_chosen(sessions: sessionmaker[Session]) -> None:
    version, directory = setup(sessions)
    ctx = context()
    with transaction(sessions) as session:
        result = sync_users(session, "salesforce", _users(r2=DirectoryUser("r2", "Rep r2", "r2@x.com", active=False)),
                            directory)
    assert result.deactivated == ["r2"] and result.unplaced == []
    chosen = set()
    with transaction(sessions) as session:
        assert session.get(Rep, "r2").active is False  # type: ignore[union-attr]
        policy = ctx.book.get(session, version)
        for i in range(12):
            lead = Lead(crm="salesforce", crm_id=f"00QS{i}", state="NEW", crm_status="Open - Not Contacted",
                        owner_id="mgr", team_id="us", state_entered_at=ny(24, 9), crm_modified_at=ny(24, 9))
            session.add(lead)
            session.flush()
            choice = choose_new_owner(session, ctx.book, version, policy, lead, ny(24, 10).astimezone(UTC))
            assert choice.excluded.get("r2") == "inactive"
            assert choice.rep is not None
            chosen.add(choice.rep.id)
    assert chosen == {"r1", "r3", "r4"}


def test_unknown_users_are_listed_and_get_no_team(sessions: sessionmaker[Session]) -> None:
    _, directory = setup(sessions)
    extra = [DirectoryUser("005NEW", "New Hire", "new@example.com", team="EMEA"),
             DirectoryUser("005GONE", "Left Long Ago", "gone@example.com", active=False)]
    with transaction(sessions) as session:
        result = sync_users(session, "salesforce", _users() + extra, directory)
        new = session.get(Rep, "005NEW")
        assert new is not None and new.team_id is None and new.active
    assert result.created == ["005GONE", "005NEW"]
    assert result.unplaced == ["005NEW"]  # an inactive stranger needs no placing
    assert any("005NEW" in w and "'EMEA'" in w for w in result.warnings)


def test_file_keeps_team_and_capacity_crm_wins_for_name_email_active(sessions: sessionmaker[Session]) -> None:
    _, directory = setup(sessions)
    renamed = DirectoryUser("r1", "Rebecca One", "rebecca@example.com", team="Somewhere Else")
    with transaction(sessions) as session:
        result = sync_users(session, "salesforce", _users(r1=renamed), directory)
        rep = session.get(Rep, "r1")
        assert rep is not None
        assert (rep.name, rep.email, rep.team_id, rep.capacity) == ("Rebecca One", "rebecca@example.com", "us", 2)
    assert result.updated == ["r1"]
    with transaction(sessions) as session:  # no file at hand: the stored team stays
        sync_users(session, "salesforce", _users(r1=renamed), None)
        assert session.get(Rep, "r1").team_id == "us"  # type: ignore[union-attr]


def test_users_the_crm_no_longer_lists_become_inactive_but_an_empty_list_changes_nothing(
        sessions: sessionmaker[Session]) -> None:
    _, directory = setup(sessions)
    with transaction(sessions) as session:
        empty = sync_users(session, "salesforce", [], directory)
        assert session.get(Rep, "r4").active  # type: ignore[union-attr]
        result = sync_users(session, "salesforce", [u for u in _users() if u.id != "r4"], directory)
        assert not session.get(Rep, "r4").active  # type: ignore[union-attr]
    assert empty.deactivated == [] and "nobody was deactivated" in empty.warnings[0]
    assert result.deactivated == ["r4"]


def test_show_directory_reports_availability_as_routing_decides_it(sessions: sessionmaker[Session]) -> None:
    version, _ = setup(sessions)
    ctx = context()
    for i in range(2):
        ingest(sessions, ctx, snapshot(f"00QFULL{i}", at=ny(24, 9), owner="r3"))  # r3 at capacity 2
    ingest(sessions, ctx, snapshot("00QX", at=ny(24, 9), owner="r1"))
    with transaction(sessions) as session:
        add_pto(session, "r2", date(2026, 11, 24), date(2026, 11, 24), "America/New_York")
        session.get(Rep, "r4").active = False  # type: ignore[union-attr]
    for at, expected_available in ((ny(24, 10), {"r1", "r5"}), (ny(24, 22), set())):
        with transaction(sessions) as session:
            session.merge(Rep(id="r5", crm="salesforce", name="Rep r5", email="r5@example.com", team_id="us",
                              capacity=2))
            session.flush()
            policy = ctx.book.get(session, version)
            rows = {row["rep"]: row for row in show_directory(session, ctx.book, version, policy, at.astimezone(UTC))}
            lead = session.scalars(select(Lead).where(Lead.crm_id == "00QX")).one()
            choice = choose_new_owner(session, ctx.book, version, policy, lead, at.astimezone(UTC))
        assert {rep for rep, row in rows.items() if row["available"]} == expected_available
        # every rep routing considered: excluded exactly when the table says unavailable, same reason
        for rep_id in ("r2", "r3", "r4", "r5"):
            assert rows[rep_id]["why_not"] == choice.excluded.get(rep_id, "")
        assert (choice.rep.id if choice.rep else None) == (None if not expected_available else "r5")
    assert rows["r2"]["on_pto"] and rows["r3"]["open_leads"] == 2
    assert rows["mgr"]["why_not"] == "role manager is not routed"


def test_add_pto_covers_whole_local_days_once(sessions: sessionmaker[Session]) -> None:
    setup(sessions)
    with transaction(sessions) as session:
        first = add_pto(session, "r1", date(2026, 11, 24), date(2026, 11, 25), "Asia/Kolkata")
        again = add_pto(session, "r1", date(2026, 11, 24), date(2026, 11, 25), "Asia/Kolkata")
        assert first.id == again.id
        assert first.starts_at == datetime(2026, 11, 23, 18, 30, tzinfo=UTC)
        assert first.ends_at == datetime(2026, 11, 25, 18, 30, tzinfo=UTC)
        with pytest.raises(ValueError, match="after"):
            add_pto(session, "r1", date(2026, 11, 26), date(2026, 11, 25), "UTC")
        with pytest.raises(ValueError, match="unknown rep"):
            add_pto(session, "nobody", date(2026, 11, 26), date(2026, 11, 26), "UTC")


def test_a_team_chooses_teams_by_naming_the_env_var_of_its_workflow_never_the_url(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    version = apply_policy(sessions, policy_raw(), ny(1, 0))
    raw = directory_raw()
    raw["teams"][0]["chat"] = "teams"  # but no workflow named
    with transaction(sessions) as session, pytest.raises(DirectoryError) as caught:
        apply_directory(session, load_directory(write(tmp_path, raw)), context().book.get(session, version))
    (problem,) = caught.value.problems
    assert problem.key == "teams[0].teams_workflow_env" and ".env variable" in problem.fix
    raw["teams"][0]["teams_workflow_env"] = "https://prod-1.westeurope.logic.azure.com/workflows/1?sig=abc"
    with pytest.raises(DirectoryError, match=r"teams\[0\]\.teams_workflow_env: String should match pattern"):
        load_directory(write(tmp_path, raw))  # a pasted URL is refused: it belongs in .env
    raw["teams"][0]["teams_workflow_env"] = "SIDECAR_TEAMS_WORKFLOW_US"
    with transaction(sessions) as session:
        apply_directory(session, load_directory(write(tmp_path, raw)), context().book.get(session, version))
    with transaction(sessions) as session:
        team = session.get(Team, "us")
        assert team is not None and (team.chat, team.teams_workflow_env) == ("teams", "SIDECAR_TEAMS_WORKFLOW_US")
