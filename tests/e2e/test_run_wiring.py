"""What `sidecar run` builds from settings (wiring.build_runtime), driven through the jobs against the
HubSpot and Slack emulators: a contact nobody works escalates, and the effects land in HubSpot and
Slack through the real connectors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.emulators.slack import SlackEmulator
from sidecar import jobs, wiring
from sidecar.directory import Directory, RepEntry, TeamEntry, apply_directory
from sidecar.engine.policies import PolicyBook
from sidecar.settings import Settings
from sidecar.store.db import transaction
from tests.support import apply_policy, policy_raw

START = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # Tuesday 08:00 in New York


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()

    def sleep(self, seconds: float) -> None:
        """The HubSpot limiter waits on the emulator's virtual clock: a poll takes the search API's five
        requests of a second (calls, emails, meetings, tasks, contacts), so a dispatch's search waits
        for the next second, as it would against HubSpot."""
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def systems() -> Iterator[tuple[HubSpotEmulator, SlackEmulator, Clock]]:
    clock = Clock()
    hubspot, slack = HubSpotEmulator(clock=clock), SlackEmulator(clock=clock)
    hubspot.start()
    slack.start()
    yield hubspot, slack, clock
    hubspot.stop()
    slack.stop()


def test_runtime_from_settings_escalates_a_hubspot_contact_into_hubspot_and_slack(
        sessions: sessionmaker[Session], systems: tuple[HubSpotEmulator, SlackEmulator, Clock],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hubspot, slack, clock = systems
    monkeypatch.chdir(tmp_path)  # no config/*.fields.yaml here: the defaults apply
    owner = hubspot.add_owner("ana@example.com", "Ana", "Lima", teams=["us"])
    other = hubspot.add_owner("bo@example.com", "Bo", "Chen", teams=["us"])
    slack.add_user("ana@example.com", "ana", "Ana Lima")
    slack.add_user("bo@example.com", "bo", "Bo Chen")
    channel = slack.add_channel("sales-us")
    raw = policy_raw()
    raw["states"]["hubspot"]["map"]["NEW"] = "NEW"
    apply_policy(sessions, raw, START - timedelta(days=1))
    with transaction(sessions) as session:
        _version, policy = PolicyBook().active(session)
        apply_directory(session, Directory(
            teams=[TeamEntry(id="us", name="US", market="TEST", slack_channel=channel)],
            reps=[RepEntry(id=owner, crm="hubspot", name="Ana Lima", email="ana@example.com", team="us"),
                  RepEntry(id=other, crm="hubspot", name="Bo Chen", email="bo@example.com", team="us")]), policy)
    settings = Settings(hubspot_access_token=SecretStr(DEFAULT_TOKEN), hubspot_api_base=hubspot.url,
                        hubspot_portal_id=str(hubspot.portal_id), slack_bot_token=SecretStr("xoxb-emulator"),
                        slack_api_base=f"{slack.url}/api/", slack_fallback_channel="#sales-ops")
    rt = wiring.build_runtime(settings, sessions, monotonic=clock.monotonic, sleep=clock.sleep)
    assert list(rt.readers) == ["hubspot"] and rt.ports.notifier is not None
    wiring.ensure_hubspot_properties(settings)
    contact = hubspot.insert("contacts", {"firstname": "Aisha", "lastname": "Al-Mansoori", "company": "Emirates",
                                          "hs_lead_status": "NEW", "hubspot_owner_id": owner, "country": "TEST"})
    for minutes in (0, 48, 60, 90):
        clock.at = START + timedelta(minutes=minutes)
        jobs.run_cycle(rt, clock.at)
    kinds = [message["kind"] for message in slack.export()]
    assert kinds.count("im") >= 2 and "channel" in kinds  # owner warned by DM, manager told in the channel
    dm = next(m for m in slack.export() if m["kind"] == "im")
    assert f"https://app.hubspot.com/contacts/{hubspot.portal_id}/record/0-1/{contact}" in str(dm["blocks"])
    exported = hubspot.export()
    notes = [n for n in exported["notes"] if contact in n["associations"]["contacts"]]
    tasks = [t for t in exported["tasks"] if contact in t["associations"]["contacts"]]
    assert len(notes) == 1 and "SLA breached" in notes[0]["properties"]["hs_note_body"]
    # reassigned at 150 % to the other rep: the lead's one task, its first-response task, went along
    assert [(t["owner"], t["properties"]["hs_task_subject"].split(":")[0]) for t in tasks] == [
        (other, "First response")]
    assert next(c for c in exported["contacts"] if c["id"] == contact)["owner"] == other
