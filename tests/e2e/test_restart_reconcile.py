"""A sidecar dies between a CRM owner change and its settle; the restart reconciles the claim with
the CRM before the engine decides anything more for that lead (HubSpot and Slack emulators, the
runtime built from settings as `sidecar run` builds it, virtual time)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.emulators.slack import SlackEmulator
from sidecar import jobs, outbox, wiring
from sidecar.directory import Directory, RepEntry, TeamEntry, apply_directory
from sidecar.engine.policies import PolicyBook
from sidecar.jobs import Runtime
from sidecar.ports import CrmWriter, NoteRequest, OwnerChange, TaskRequest
from sidecar.settings import Settings
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, OutboxRow
from tests.support import apply_policy, policy_raw

START = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # Tuesday 08:00 in New York; the window is 1 h
REASSIGN = START + timedelta(minutes=90)  # the ladder's 150 % step gives the lead to the other rep


class Killed(BaseException):
    """The process died (not an error the dispatcher could catch and settle)."""


class DiesAfterOwnerWrite:
    """The real writer, but the process dies right after the CRM took an owner change."""

    def __init__(self, writer: CrmWriter) -> None:
        self.writer, self.crm = writer, writer.crm

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        self.writer.change_owner(change, idempotency_key)
        raise Killed

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        return self.writer.create_task(task, idempotency_key)

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        return self.writer.add_note(note, idempotency_key)


class Org:
    def __init__(self, hubspot: HubSpotEmulator, slack: SlackEmulator, sessions: sessionmaker[Session],
                 clock: list[datetime]) -> None:
        self.hubspot, self.slack, self.sessions, self.clock = hubspot, slack, sessions, clock
        self.ana = hubspot.add_owner("ana@example.com", "Ana", "Lima", teams=["us"])
        self.bo = hubspot.add_owner("bo@example.com", "Bo", "Chen", teams=["us"])
        self.slack_ids = {"ana": slack.add_user("ana@example.com", "ana", "Ana Lima"),
                          "bo": slack.add_user("bo@example.com", "bo", "Bo Chen")}
        channel = slack.add_channel("sales-us")
        raw = policy_raw()
        raw["states"]["hubspot"]["map"]["NEW"] = "NEW"
        apply_policy(sessions, raw, START - timedelta(days=1))
        with transaction(sessions) as session:
            _version, policy = PolicyBook().active(session)
            apply_directory(session, Directory(
                teams=[TeamEntry(id="us", name="US", market="TEST", slack_channel=channel)],
                reps=[RepEntry(id=self.ana, crm="hubspot", name="Ana Lima", email="ana@example.com", team="us"),
                      RepEntry(id=self.bo, crm="hubspot", name="Bo Chen", email="bo@example.com", team="us")]),
                policy)
        self.settings = Settings(hubspot_access_token=SecretStr(DEFAULT_TOKEN), hubspot_api_base=hubspot.url,
                                 hubspot_portal_id=str(hubspot.portal_id), slack_bot_token=SecretStr("xoxb-emulator"),
                                 slack_api_base=f"{slack.url}/api/", slack_fallback_channel="#sales-ops")
        wiring.ensure_hubspot_properties(self.settings)
        self.contact = hubspot.insert("contacts", {
            "firstname": "Aisha", "lastname": "Al-Mansoori", "company": "Emirates", "hs_lead_status": "NEW",
            "hubspot_owner_id": self.ana, "country": "TEST"})

    def start(self, now: datetime) -> Runtime:
        """What `sidecar run` does at start (service.run): fresh ports, then orphaned claims released."""
        runtime = wiring.build_runtime(self.settings, self.sessions, monotonic=lambda: self.clock[0].timestamp(),
                                       sleep=self.wait)
        outbox.release_orphaned_claims(self.sessions, now)
        return runtime

    def wait(self, seconds: float) -> None:
        """The HubSpot limiter waits on the emulators' virtual clock: a poll takes the search API's five
        requests of a second, so a dispatch's search waits for the next second, as against HubSpot."""
        self.clock[0] += timedelta(seconds=seconds)

    def crashed_after_the_owner_write(self, clock: list[datetime]) -> None:
        """Escalate until the 150 % step, then die inside the dispatch that writes the new owner."""
        runtime = self.start(START)
        for minutes in (0, 48, 60):
            clock[0] = START + timedelta(minutes=minutes)
            jobs.run_cycle(runtime, clock[0])
        clock[0] = REASSIGN
        jobs.poll_all(runtime, REASSIGN)
        assert jobs.evaluate(runtime, REASSIGN)["sla_breach_auto_reassign"] == 1
        runtime.ports.writers = {"hubspot": DiesAfterOwnerWrite(runtime.ports.writers["hubspot"])}
        with pytest.raises(Killed):
            jobs.dispatch(runtime, REASSIGN)
        assert self.owner() == self.bo  # the CRM took it; the outbox never heard
        assert self.change()["status"] == "in_flight"

    def owner(self) -> str:
        return str(next(c for c in self.hubspot.export()["contacts"] if c["id"] == self.contact)["owner"])

    def change(self) -> dict[str, Any]:
        with transaction(self.sessions) as session:
            row = session.scalars(select(OutboxRow).where(OutboxRow.action == "change_owner")).one()
            return {"status": row.status, "attempts": row.attempts}

    def audit_kinds(self) -> list[str]:
        with transaction(self.sessions) as session:
            return [row.kind for row in session.scalars(select(AuditRow).order_by(AuditRow.id))]

    def tasks_for(self, owner: str) -> list[dict[str, Any]]:
        tasks = self.hubspot.export()["tasks"]
        return [t for t in tasks if self.contact in t["associations"]["contacts"] and t["owner"] == owner]

    def task_keys(self, owner: str) -> list[str]:
        return sorted(str(t["properties"]["sidecar_idempotency_key"]) for t in self.tasks_for(owner))

    def dms_to(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.export() if m["kind"] == "im" and m["recipient"] == self.slack_ids[name]]


@pytest.fixture
def org(sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[tuple[Org, list[datetime]]]:
    monkeypatch.chdir(tmp_path)  # no config/*.fields.yaml here: the defaults apply
    clock = [START]
    hubspot, slack = HubSpotEmulator(clock=lambda: clock[0]), SlackEmulator(clock=lambda: clock[0])
    hubspot.start()
    slack.start()
    yield Org(hubspot, slack, sessions, clock), clock
    hubspot.stop()
    slack.stop()


def test_a_restart_within_the_lease_settles_the_written_owner_change_and_the_new_owner_gets_the_task(
        org: tuple[Org, list[datetime]]) -> None:
    world, clock = org
    if world.sessions.kw["bind"].dialect.name != "sqlite":
        pytest.skip("on PostgreSQL a claim in flight may be a live instance's: its lease decides")
    world.crashed_after_the_owner_write(clock)
    restart = clock[0] = REASSIGN + timedelta(minutes=1)  # the dead claim's lease runs 4 more minutes
    runtime = world.start(restart)
    jobs.run_cycle(runtime, restart)
    # Re-read from the CRM: the owner is already the target, so the change is done (not a conflict)...
    assert world.change() == {"status": "done", "attempts": 2}
    assert "reassignment_skipped_owner_changed" not in world.audit_kinds()
    # ...and what depended on it goes out: the new owner's task, once, and the messages.
    # Bo holds the lead's one task: the first-response task created for Ana at arrival, re-owned to
    # him on the hand-over (nothing left with the old owner, no second task beside it).
    assert world.task_keys(world.bo) == ["first-response:lead:1:task:70000001"]
    assert world.task_keys(world.ana) == []
    assert world.dms_to("bo")
    with transaction(world.sessions) as session:
        assert session.scalars(select(OutboxRow).where(OutboxRow.status != "done")).all() == []


def test_after_a_long_outage_nothing_is_decided_for_the_lead_until_its_owner_change_settles(
        org: tuple[Org, list[datetime]]) -> None:
    world, clock = org
    world.crashed_after_the_owner_write(clock)
    # Down until after the new owner's own 80 %, 100 % and 150 % instants (138, 150, 180 min).
    restart = clock[0] = REASSIGN + timedelta(minutes=95)
    runtime = world.start(restart)
    jobs.poll_all(runtime, restart)
    before = world.audit_kinds()
    assert jobs.evaluate(runtime, restart) == {}  # held: the owner change is not settled yet
    assert world.audit_kinds() == before
    jobs.dispatch(runtime, restart)
    assert world.change()["status"] == "done"
    # The lead's one task: the first-response task, re-owned from Ana on the hand-over.
    assert world.task_keys(world.bo) == ["first-response:lead:1:task:70000001"]
    fired = jobs.evaluate(runtime, restart)  # now on the owner the CRM shows: Bo's missed steps, late
    assert fired["sla_breach_imminent"] == 1 and fired["sla_breach"] == 1
    assert "reassignment_skipped_owner_changed" not in world.audit_kinds()


def test_a_pending_owner_change_holds_the_leads_clock_and_it_fires_once_settled(
        org: tuple[Org, list[datetime]]) -> None:
    """No crash: the change simply has not been performed yet (Slack and the CRM are fine, the
    dispatcher has not run). The new owner's warning waits for it instead of firing on a shadow
    owner the CRM does not show yet."""
    world, clock = org
    runtime = world.start(START)
    for minutes in (0, 48, 60):
        clock[0] = START + timedelta(minutes=minutes)
        jobs.run_cycle(runtime, clock[0])
    clock[0] = REASSIGN
    jobs.poll_all(runtime, REASSIGN)
    jobs.evaluate(runtime, REASSIGN)
    assert world.owner() == world.ana and world.change()["status"] == "pending"
    warn_bo = clock[0] = REASSIGN + timedelta(minutes=49)  # Bo's own 80 %
    assert jobs.evaluate(runtime, warn_bo) == {}
    jobs.dispatch(runtime, warn_bo)
    assert world.owner() == world.bo
    assert jobs.evaluate(runtime, warn_bo)["sla_breach_imminent"] == 1
