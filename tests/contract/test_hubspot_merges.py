"""Contract tests: HubSpot contact merges. The emulator models them as HubSpot behaves (a merged-away
id reads as the survivor under the survivor's id; search forgets it; `contact.merge` and
`contact.deletion` webhooks); the reader matches by the requested id; the core closes the
merged-away lead's clock and links both leads in their timelines and the audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import load_field_map
from connectors.hubspot.reader import HubSpotReader
from connectors.hubspot.webhooks import lead_events
from sidecar.engine.clocks import open_clock_of
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.policy import load_policy
from sidecar.policy.version import record_version
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead, LeadEvent
from sidecar.store.models import Clock as ClockRow
from sidecar.sync import drain_intake, enqueue_intake, poll
from tests.contract.harness import Clock

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
FIELDS = load_field_map(ROOT / "config" / "hubspot.fields.example.yaml")


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def reader(api: HubSpotApi, clock: Clock) -> HubSpotReader:
    return HubSpotReader(api, FIELDS, clock=clock)


def two_contacts(emulator: HubSpotEmulator) -> tuple[str, str]:
    rows = [{"email": f"{n}@example.com", "firstname": n, "hs_lead_status": "NEW", "country": "Germany"}
            for n in ("ada", "ada.l")]
    primary, secondary = emulator.insert_many("contacts", rows)
    return primary, secondary


# -- the emulator ------------------------------------------------------------------------------------------


def test_a_merged_away_id_reads_as_the_survivor_and_leaves_search(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    primary, secondary = two_contacts(emulator)
    emulator.configure_webhooks("http://127.0.0.1:9/hooks", "secret",
                                subscriptions=["contact.merge", "contact.deletion"])
    clock.advance(60)
    emulator.merge("contacts", primary, secondary)
    record = api.call("general", "crm.objects.basic_api", "get_by_id", "contacts", secondary,
                      properties=["hs_merged_object_ids"])
    assert record["id"] == primary and record["properties"]["hs_merged_object_ids"] == secondary
    body = api.call("general", "crm.objects.batch_api", "read", "contacts",
                    {"inputs": [{"id": secondary}, {"id": primary}], "properties": ["email"],
                     "propertiesWithHistory": []})
    assert [r["id"] for r in body["results"]] == [primary]  # the survivor, once
    found = api.call("search", "crm.objects.search_api", "do_search", "contacts",
                     {"filterGroups": [], "properties": ["email"], "limit": 10})
    assert [r["id"] for r in found["results"]] == [primary]
    events = emulator.pending_webhooks
    merge = next(e for e in events if e["subscriptionType"] == "contact.merge")
    assert (merge["primaryObjectId"], merge["mergedObjectIds"]) == (int(primary), [int(secondary)])
    assert any(e["subscriptionType"] == "contact.deletion" and e["objectId"] == int(secondary) for e in events)
    # What the receiver hands the intake: both ids, so both are read again.
    assert {object_id for _delivery, object_id in lead_events(events)} == {primary, secondary}


# -- the reader --------------------------------------------------------------------------------------------


def test_the_reader_matches_by_the_requested_id(emulator: HubSpotEmulator, reader: HubSpotReader,
                                                clock: Clock) -> None:
    primary, secondary = two_contacts(emulator)
    clock.advance(60)
    emulator.merge("contacts", primary, secondary)
    survivor, merged = reader.read_leads([secondary])
    assert (survivor.crm_id, survivor.merged_into, survivor.crm_status) == (primary, None, "NEW")
    assert (merged.crm_id, merged.merged_into, merged.crm_status) == (secondary, primary, FIELDS.deleted_status)
    assert merged.crm_modified_at == survivor.crm_modified_at == START + timedelta(seconds=60)
    assert [s.crm_id for s in reader.read_leads([primary, secondary])] == [primary, secondary]


# -- through the store -------------------------------------------------------------------------------------


def store_with_policy(sessions: sessionmaker[Session]) -> EngineContext:
    with transaction(sessions) as session:
        record_version(session, load_policy(ROOT / "config" / "policy.example.yaml"), "policy.example.yaml",
                       START)
    return EngineContext(PolicyBook(), RecordLinks())


def leads_by_crm_id(session: Session) -> dict[str, Lead]:
    return {lead.crm_id: lead for lead in session.scalars(select(Lead).where(Lead.crm == "hubspot"))}


def test_a_merge_closes_the_dead_ids_clock_and_links_both_leads(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock, sessions: sessionmaker[Session]
) -> None:
    ctx = store_with_policy(sessions)
    primary, secondary = two_contacts(emulator)
    clock.advance(60)
    poll(sessions, ctx, reader, clock())
    with transaction(sessions) as session:
        leads = leads_by_crm_id(session)
        assert open_clock_of(session, leads[primary].id, "sla") and open_clock_of(session, leads[secondary].id, "sla")
    clock.advance(600)
    emulator.configure_webhooks("http://127.0.0.1:9/hooks", "secret", subscriptions=["contact.merge"])
    emulator.merge("contacts", primary, secondary)
    with transaction(sessions) as session:
        enqueue_intake(session, "hubspot", lead_events(emulator.pending_webhooks), clock())
    drain_intake(sessions, ctx, reader, clock())
    with transaction(sessions) as session:
        leads = leads_by_crm_id(session)
        dead, survivor = leads[secondary], leads[primary]
        assert open_clock_of(session, dead.id, "sla") is None  # nothing left to escalate the dead id
        closed = {(c.kind, c.close_reason)
                  for c in session.scalars(select(ClockRow).where(ClockRow.lead_id == dead.id))}
        assert closed == {("sla", "merged"), ("stuck", "merged")} and dead.state == "CLOSED"
        assert open_clock_of(session, survivor.id, "sla") is not None  # the survivor's clock carries on
        merged = {(e.lead_id, e.old, e.new)
                  for e in session.scalars(select(LeadEvent).where(LeadEvent.kind == "merged"))}
        assert merged == {(dead.id, secondary, primary), (survivor.id, secondary, primary)}
        (row,) = session.scalars(select(AuditRow).where(AuditRow.kind == "lead_merged"))
        assert row.lead_id == survivor.id
        assert (row.details["merged_lead_id"], row.details["survivor_lead_id"]) == (dead.id, survivor.id)
    # The next poll sees the survivor (and its merged id) again: nothing is recorded twice.
    clock.advance(60)
    assert poll(sessions, ctx, reader, clock()).events == 0
    with transaction(sessions) as session:
        assert len(list(session.scalars(select(AuditRow).where(AuditRow.kind == "lead_merged")))) == 1


def test_a_poll_alone_closes_a_merged_away_lead(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock, sessions: sessionmaker[Session]
) -> None:
    """No webhooks: search never shows the merged-away id again, but the survivor is modified by
    the merge and names it in hs_merged_object_ids."""
    ctx = store_with_policy(sessions)
    primary, secondary = two_contacts(emulator)
    clock.advance(60)
    poll(sessions, ctx, reader, clock())
    clock.advance(60)
    emulator.merge("contacts", primary, secondary)
    clock.advance(60)
    poll(sessions, ctx, reader, clock())
    with transaction(sessions) as session:
        leads = leads_by_crm_id(session)
        assert leads[secondary].state == "CLOSED" and open_clock_of(session, leads[secondary].id, "sla") is None
        assert leads[primary].state == "NEW" and open_clock_of(session, leads[primary].id, "sla") is not None


def test_a_merge_of_a_lead_never_tracked_records_nothing(
    emulator: HubSpotEmulator, reader: HubSpotReader, clock: Clock, sessions: sessionmaker[Session]
) -> None:
    ctx = store_with_policy(sessions)
    primary, secondary = two_contacts(emulator)
    emulator.merge("contacts", primary, secondary)  # before the sidecar ever saw either
    clock.advance(60)
    poll(sessions, ctx, reader, clock())
    with transaction(sessions) as session:
        assert set(leads_by_crm_id(session)) == {primary}
        assert list(session.scalars(select(AuditRow).where(AuditRow.kind == "lead_merged"))) == []
