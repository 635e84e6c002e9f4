"""Contract tests: HubSpot caps a batch read that asks for property history at 50 inputs (100
without history). The emulator answers 51 like HubSpot; the reader reads 51+ leads in chunks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.hubspot_objects import HISTORY_BATCH_MESSAGE
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.errors import Rejected
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.reader import HubSpotReader
from sidecar.ports import Cursor
from tests.contract.harness import Clock

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def contacts(emulator: HubSpotEmulator, count: int) -> list[str]:
    return emulator.insert_many("contacts", ({"email": f"h{i}@example.com", "hs_lead_status": "NEW"}
                                             for i in range(count)))


def batch_read(api: HubSpotApi, ids: list[str], history: list[str]) -> object:
    return api.call("general", "crm.objects.batch_api", "read", "contacts",
                    {"inputs": [{"id": i} for i in ids], "properties": ["email"], "propertiesWithHistory": history})


def test_the_emulator_refuses_51_inputs_with_history_like_hubspot(emulator: HubSpotEmulator, api: HubSpotApi) -> None:
    ids = contacts(emulator, 101)
    with pytest.raises(Rejected) as refused:
        batch_read(api, ids[:51], ["hs_lead_status"])
    assert (refused.value.status, refused.value.category) == (400, "VALIDATION_ERROR")
    assert refused.value.body["message"] == HISTORY_BATCH_MESSAGE
    assert HISTORY_BATCH_MESSAGE.startswith(
        "The maximum number of inputs supported in a batch request for property histories is 50.")
    assert len(batch_read(api, ids[:50], ["hs_lead_status"])["results"]) == 50  # type: ignore[index]
    assert len(batch_read(api, ids[:100], [])["results"]) == 100  # type: ignore[index]  # no history: 100


def test_history_reads_of_120_leads_go_in_chunks_of_50(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    ids = contacts(emulator, 120)
    clock.advance(60)
    for contact in ids[::7]:
        emulator.update_as_user("contacts", contact, {"hs_lead_status": "IN_PROGRESS"})
    reader = HubSpotReader(api, FieldMap(), clock=clock, with_engagements=False)
    api.calls.clear()
    snapshots = reader.read_leads(ids)
    assert [s.crm_id for s in snapshots] == ids
    assert api.calls["batch_api.read"] == 3  # 50 + 50 + 20
    moved = {s.crm_id: s.crm_status for s in snapshots if s.crm_status == "IN_PROGRESS"}
    assert set(moved) == set(ids[::7])  # history came with every chunk


def test_a_poll_of_51_changed_leads_advances_the_cursor(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    ids = contacts(emulator, 51)
    clock.advance(timedelta(minutes=1).total_seconds())
    reader = HubSpotReader(api, FieldMap(), clock=clock, with_engagements=False)
    pages = list(reader.read_changes(Cursor()))
    assert sorted(s.crm_id for p in pages for s in p.snapshots) == sorted(ids)
    assert pages[-1].cursor.at == START
