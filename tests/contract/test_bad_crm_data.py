"""Bad CRM data never blocks the rest (issue 15, item 5), through the emulators: one poll reads a
batch holding good leads and one lead of each bad kind; the good ones are applied with their clocks,
each bad one is handled on its own (tracked with the policy default, stored UNMAPPED, closed, or
audited as `ingest_failed` and skipped), the cursor moves past all of them, and `sidecar status`
and the dashboard name each unknown value once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.hubspot import mapping as hubspot_mapping
from connectors.hubspot import reader as hubspot_reader
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import load_field_map as load_hubspot_fields
from connectors.hubspot.reader import HubSpotReader
from connectors.salesforce import mapping as salesforce_mapping
from connectors.salesforce import reader as salesforce_reader
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.fields import load_field_map as load_salesforce_fields
from connectors.salesforce.reader import SalesforceReader
from sidecar.data_quality import unknown_values
from sidecar.engine import clocks
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.ingest import UNMAPPED
from sidecar.links import RecordLinks
from sidecar.policy import load_policy
from sidecar.policy.version import record_version
from sidecar.status import gather
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead, Rep, Team
from sidecar.sync import drain_intake, enqueue_intake, poll
from sidecar.web.dashboard.providers import queues
from tests.contract.harness import Clock, Serve
from tests.contract.test_salesforce_connector import add_standard_task_fields

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # a Tuesday, business hours in New York and Berlin
POLICY = ROOT / "config" / "policy.example.yaml"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    add_standard_task_fields(emulator)
    return serve(emulator, tls.server_context)


def _setup(sessions: sessionmaker[Session], crm: str, owners: list[str]) -> EngineContext:
    with transaction(sessions) as session:
        record_version(session, load_policy(POLICY), str(POLICY), START)
        session.add(Team(id="t", name="Team", market="US-East", manager_id=None, slack_channel="#t"))
        session.flush()
        for owner in owners:  # the directory knows these owners, and only these
            session.add(Rep(id=owner, crm=crm, name=f"Rep {owner}", email=f"{owner}@example.com", team_id="t"))
    return EngineContext(PolicyBook(), RecordLinks())


def _leads(sessions: sessionmaker[Session], crm: str) -> dict[str, Lead]:
    with transaction(sessions) as session:
        return {lead.crm_id: lead for lead in session.scalars(select(Lead).where(Lead.crm == crm))}


def _has_clock(sessions: sessionmaker[Session], lead: Lead) -> bool:
    with transaction(sessions) as session:
        return clocks.open_clock_of(session, lead.id, clocks.SLA) is not None


def _failures(sessions: sessionmaker[Session]) -> dict[str, str]:
    with transaction(sessions) as session:
        return {row.details["crm_id"]: row.details["error"] for row in session.scalars(
            select(AuditRow).where(AuditRow.kind == "ingest_failed"))}


def _unknown(sessions: sessionmaker[Session]) -> set[tuple[str, str, int]]:
    with transaction(sessions) as session:
        return {(u.what, u.value, u.leads) for u in unknown_values(session, load_policy(POLICY))}


def test_salesforce_one_bad_lead_of_each_kind_never_blocks_the_good_ones(
    emu: SalesforceEmulator, client: SalesforceClient, sessions: sessionmaker[Session], clock: Clock
) -> None:
    reader = SalesforceReader(client, load_salesforce_fields(ROOT / "config" / "salesforce.fields.example.yaml"),
                              clock=clock)
    rep = emu.integration_user_id
    ctx = _setup(sessions, "salesforce", [rep])
    queue = emu.add_queue("Inbound Queue")

    def lead(name: str, **fields: object) -> str:
        return emu.insert("Lead", {"FirstName": "Ada", "LastName": name, "Company": "Engines",
                                   "Country": "United States", "LeadSource": "Web", **fields})

    good = [lead("Good1"), lead("Good2")]
    in_queue = lead("Queued", OwnerId=queue)
    atlantis = [lead("Far1", Country="Atlantis"), lead("Far2", Country="Atlantis")]  # two leads, one value
    pigeon = lead("Pigeon", LeadSource="Carrier Pigeon")
    odd_status = lead("Odd", Status="Nurture - Someday")
    converted, deleted = lead("Won"), lead("Gone")
    good.append(lead("Good3"))  # after every bad one in the batch
    clock.advance(minutes=1)

    stats = poll(sessions, ctx, reader, clock.now)
    leads = _leads(sessions, "salesforce")
    assert stats.snapshots == len(leads) == 10 and not _failures(sessions)
    for crm_id in (*good, in_queue, *atlantis, pigeon, converted, deleted):
        assert leads[crm_id].state == "NEW" and _has_clock(sessions, leads[crm_id]), crm_id
    assert leads[in_queue].owner_id == queue  # a queue owns it: the first-response pattern finds it an owner
    assert (leads[atlantis[0]].market, leads[pigeon].source) == ("Atlantis", "Carrier Pigeon")
    assert leads[odd_status].state == UNMAPPED and not _has_clock(sessions, leads[odd_status])

    clock.advance(minutes=5)
    emu.system_update("Lead", converted, {"IsConverted": True, "Status": "Qualified"})
    client.rest("DELETE", f"sobjects/Lead/{deleted}")
    clock.advance(minutes=1)
    poll(sessions, ctx, reader, clock.now)
    leads = _leads(sessions, "salesforce")
    assert (leads[converted].state, leads[deleted].state) == ("CONVERTED", "CLOSED")
    assert not _has_clock(sessions, leads[converted]) and not _has_clock(sessions, leads[deleted])
    assert poll(sessions, ctx, reader, clock.now).snapshots == 0

    assert _unknown(sessions) == {("market", "Atlantis", 2), ("source", "Carrier Pigeon", 1),
                                  ("status", "Nurture - Someday", 1), ("owner", queue, 1)}
    with transaction(sessions) as session:
        report = gather(session, clock.now)
        [view] = [view for view in queues(session, clock.now) if view.name == "unknown CRM values"]
    assert sorted((u.what, u.value) for u in report.unknown) == sorted(
        [("market", "Atlantis"), ("source", "Carrier Pigeon"), ("status", "Nurture - Someday"), ("owner", queue)])
    assert len(view.items) == 4 and any("unknown market 'Atlantis'" in item.reason and item.lead == "2 leads"
                                        for item in view.items)


HUGE = "x" * 60_000  # HubSpot text properties hold up to 65,536 characters


def test_hubspot_one_bad_contact_of_each_kind_never_blocks_the_good_ones(
    emulator: HubSpotEmulator, api: HubSpotApi, sessions: sessionmaker[Session], clock: Clock
) -> None:
    fields = load_hubspot_fields(ROOT / "config" / "hubspot.fields.example.yaml")
    reader = HubSpotReader(api, fields, clock=clock)
    known = emulator.add_owner("rep@example.com", "Known", "Rep")
    ctx = _setup(sessions, "hubspot", [known])
    n = iter(range(100))

    def contact(**properties: str) -> str:
        i = next(n)
        return emulator.insert("contacts", {"email": f"c{i}@example.com", "firstname": f"C{i}",
                                            "hs_lead_status": "NEW", "country": "United States",
                                            "hubspot_owner_id": known, **properties})

    good = [contact(), contact()]
    no_owner = contact(hubspot_owner_id="")
    stranger = contact(hubspot_owner_id="99999999")  # an owner id the owners list does not have
    huge = contact(firstname=HUGE, company=HUGE)
    odd_status = contact(hs_lead_status="SOMEDAY")
    long_status = contact(hs_lead_status="LATER_" + "X" * 200)  # wider than the store's status column
    atlantis = contact(country="Atlantis")
    archived, merged_away, survivor = contact(), contact(), contact()
    good.append(contact())
    clock.advance(60)

    poll(sessions, ctx, reader, clock())
    leads = _leads(sessions, "hubspot")
    assert len(leads) == 12 and not _failures(sessions)
    for crm_id in (*good, no_owner, stranger, huge, atlantis, archived, merged_away, survivor):
        assert leads[crm_id].state == "NEW" and _has_clock(sessions, leads[crm_id]), crm_id
    assert leads[no_owner].owner_id is None and leads[stranger].owner_id == "99999999"
    assert len(leads[huge].name) <= 300 and len(leads[huge].company) <= 300  # clipped, not refused
    assert leads[odd_status].state == UNMAPPED and not _has_clock(sessions, leads[odd_status])
    assert leads[long_status].state == UNMAPPED and leads[long_status].crm_status.startswith("LATER_X")

    clock.advance(300)
    emulator.archive("contacts", archived)
    emulator.merge("contacts", survivor, merged_away)
    clock.advance(60)
    poll(sessions, ctx, reader, clock())  # the survivor's change names the merged-away id
    with transaction(sessions) as session:  # a deletion is announced by webhook (a search never returns it)
        enqueue_intake(session, "hubspot", [("d1", archived), ("d2", good[0])], clock())
    drain_intake(sessions, ctx, reader, clock())
    leads = _leads(sessions, "hubspot")
    assert leads[archived].state == "CLOSED" and not _has_clock(sessions, leads[archived])
    assert leads[merged_away].state == "CLOSED" and not _has_clock(sessions, leads[merged_away])
    assert _has_clock(sessions, leads[survivor]) and _has_clock(sessions, leads[good[0]])
    assert {("market", "Atlantis", 1), ("status", "SOMEDAY", 1), ("owner", "99999999", 1)} <= _unknown(sessions)


def test_hubspot_a_contact_the_mapping_cannot_read_is_audited_and_the_page_goes_on(
    emulator: HubSpotEmulator, api: HubSpotApi, sessions: sessionmaker[Session], clock: Clock,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record arrives without the modified stamp the mapping needs (HubSpot always sends it;
    the emulator cannot be made to omit it, so the record is altered on its way to the mapping):
    it cannot be placed in time; the others on its page are applied and the cursor moves."""
    reader = HubSpotReader(api, load_hubspot_fields(ROOT / "config" / "hubspot.fields.example.yaml"), clock=clock)
    ctx = _setup(sessions, "hubspot", [])
    ids = emulator.insert_many("contacts", ({"email": f"e{i}@example.com", "hs_lead_status": "NEW",
                                              "country": "Germany"} for i in range(4)))
    bad = ids[2]
    clock.advance(60)

    def stampless(record: dict[str, Any], fields: Any, activities: Any = (), *, deleted: bool = False) -> Any:
        if str(record["id"]) == bad:
            record = {**record, "updatedAt": None,
                      "properties": {**record["properties"], fields.modified_property: None}}
        return hubspot_mapping.to_snapshot(record, fields, activities, deleted=deleted)

    monkeypatch.setattr(hubspot_reader, "to_snapshot", stampless)
    poll(sessions, ctx, reader, clock())
    assert set(_leads(sessions, "hubspot")) == set(ids) - {bad}
    assert "has no lastmodifieddate" in _failures(sessions)[bad]
    assert poll(sessions, ctx, reader, clock()).snapshots == 0  # the cursor is past it


def test_salesforce_a_lead_the_mapping_cannot_read_is_audited_and_the_page_goes_on(
    emu: SalesforceEmulator, client: SalesforceClient, sessions: sessionmaker[Session], clock: Clock,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Salesforce twin: one row's SystemModstamp cannot be read (Salesforce always sends a valid
    one and the emulator enforces it, so the row is altered on its way to the mapping)."""
    reader = SalesforceReader(client, load_salesforce_fields(ROOT / "config" / "salesforce.fields.example.yaml"),
                              clock=clock)
    ctx = _setup(sessions, "salesforce", [])
    ids = [emu.insert("Lead", {"LastName": f"L{i}", "Company": "Engines", "Country": "Germany"}) for i in range(4)]
    bad = ids[1]
    clock.advance(minutes=1)

    def garbled(record: dict[str, Any], fields: Any, related: Any) -> Any:
        if record["Id"] == bad:
            record = {**record, "CreatedDate": "yesterday-ish"}
        return salesforce_mapping.to_snapshot(record, fields, related)

    monkeypatch.setattr(salesforce_reader, "to_snapshot", garbled)
    poll(sessions, ctx, reader, clock.now)
    assert set(_leads(sessions, "salesforce")) == set(ids) - {bad}
    assert "yesterday-ish" in _failures(sessions)[bad]
    assert poll(sessions, ctx, reader, clock.now).snapshots == 0

    # A webhook naming it: the drain sets that id aside with the reason, the others are applied.
    clock.advance(minutes=1)
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("n1", bad), ("n2", ids[0])], clock.now)
    drain_intake(sessions, ctx, reader, clock.now)
    with transaction(sessions) as session:
        report = gather(session, clock.now)
    assert [(crm_id, "yesterday-ish" in why) for _, crm_id, why in report.dead_intake] == [(bad, True)]
