"""LeadUpdate against the emulated CRMs: a compliance-flagged lead polled from Salesforce or HubSpot
ends in COMPLIANCE_HOLD in the CRM, a rejected one in DISQUALIFIED_COMPLIANCE with the reason; both
emulators refuse a status value their picklist does not have, as the real APIs do."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import load_field_map as load_hubspot_fields
from connectors.hubspot.reader import HubSpotReader
from connectors.hubspot.writer import HubSpotWriter
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.fields import load_field_map as load_salesforce_fields
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm
from sidecar.engine.patterns.compliance_decisions import decide
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.outbox import Ports, dispatch
from sidecar.policy import load_policy
from sidecar.policy.version import record_version
from sidecar.ports import ConflictError, LeadContext, LeadUpdate, PermanentError
from sidecar.store.db import transaction
from sidecar.sync import poll
from tests.conftest import EXAMPLE_POLICY, ROOT
from tests.contract.harness import Clock, Serve
from tests.support import FakeNotifier

START = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # Wednesday, US-East and DACH open

SF_FIELDS = dataclasses.replace(load_salesforce_fields(ROOT / "config" / "salesforce.fields.example.yaml"),
                                flags={"Sanctions_Match__c": "sanctions_match"})
HS_FIELDS = dataclasses.replace(load_hubspot_fields(ROOT / "config" / "hubspot.fields.example.yaml"),
                                flags={"sanctions_match": "sanctions_match"})


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    for name, ftype in (("CompletedDateTime", "datetime"), ("ReminderDateTime", "datetime"),
                        ("IsReminderSet", "boolean")):
        emulator.add_field("Task", name, ftype)
    emulator.add_field("Task", "Sidecar_Key__c", "string", external_id=True, unique=True)
    emulator.add_field("Lead", "Sanctions_Match__c", "boolean")
    return serve(emulator, tls.server_context)


def ctx_with_policy(sessions: sessionmaker[Session]) -> EngineContext:
    with transaction(sessions) as session:
        record_version(session, load_policy(EXAMPLE_POLICY), str(EXAMPLE_POLICY), START)
    return EngineContext(PolicyBook(), RecordLinks("https://acme.my.salesforce.com", "24681357"))


def sf_context(lead_id: str) -> LeadContext:
    return LeadContext(Crm.SALESFORCE, lead_id, "Ada Lovelace", "Engines", "US-East", "web_form", None, "NEW",
                       None, None, f"https://acme.my.salesforce.com/lightning/r/Lead/{lead_id}/view")


def test_salesforce_status_update_is_idempotent_refuses_unknown_values_and_spares_a_persons_status(
        emu: SalesforceEmulator, client: SalesforceClient) -> None:
    writer = SalesforceWriter(client, SF_FIELDS)
    lead_id = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines"})
    writer.update_lead(LeadUpdate(sf_context(lead_id), crm_status="Compliance Hold"), "k1")
    assert emu.get("Lead", lead_id)["Status"] == "Compliance Hold"  # type: ignore[index]
    stamp = emu.get("Lead", lead_id)["LastModifiedDate"]  # type: ignore[index]
    writer.update_lead(LeadUpdate(sf_context(lead_id), crm_status="Compliance Hold"), "k1")  # a replay
    assert emu.get("Lead", lead_id)["LastModifiedDate"] == stamp  # type: ignore[index]
    with pytest.raises(PermanentError, match="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"):
        writer.update_lead(LeadUpdate(sf_context(lead_id), crm_status="Held By Compliance"), "k2")
    emu.update_as_user("Lead", lead_id, {"Status": "Working - Contacted"})  # a person moved it meanwhile
    with pytest.raises(ConflictError, match="Working - Contacted"):
        writer.update_lead(LeadUpdate(sf_context(lead_id), crm_status="Open - Not Contacted",
                                      expect_status="Compliance Hold"), "k3")
    assert emu.get("Lead", lead_id)["Status"] == "Working - Contacted"  # type: ignore[index]


def test_salesforce_flagged_lead_is_held_in_the_crm_and_a_rejection_disqualifies_it_with_the_reason(
        emu: SalesforceEmulator, client: SalesforceClient, sessions: sessionmaker[Session], clock: Clock) -> None:
    ctx = ctx_with_policy(sessions)
    reader, writer = SalesforceReader(client, SF_FIELDS, clock=clock), SalesforceWriter(client, SF_FIELDS)
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    lead_id = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "Country": "United States",
                                  "LeadSource": "Web", "Sanctions_Match__c": True})
    clock.advance(minutes=1)
    poll(sessions, ctx, reader, clock.now)  # within one poll: decided...
    dispatch(sessions, ports, clock.now)  # ...and written
    assert emu.get("Lead", lead_id)["Status"] == "Compliance Hold"  # type: ignore[index]
    clock.advance(minutes=30)
    with transaction(sessions) as session:
        decide(session, ctx, "salesforce", lead_id, "reject", "carol", "on the OFAC list", clock.now)
    dispatch(sessions, ports, clock.now)
    assert emu.get("Lead", lead_id)["Status"] == "Disqualified - Compliance"  # type: ignore[index]
    notes = [t for t in emu.store.tables["Task"].values() if t["WhoId"] == emu.get("Lead", lead_id)["Id"]]  # type: ignore[index]
    assert any("Disqualified by compliance (carol): on the OFAC list" in (t["Description"] or "") for t in notes)


def hs_context(crm_id: str) -> LeadContext:
    return LeadContext(Crm.HUBSPOT, crm_id, "Ada Lovelace", "Analytical", "US-East", "web_form", None, "NEW",
                       None, None, f"https://app.hubspot.com/contacts/24681357/record/0-1/{crm_id}")


def test_hubspot_status_update_is_idempotent_refuses_unknown_options_and_spares_a_persons_status(
        emulator: HubSpotEmulator, api: HubSpotApi) -> None:
    writer = HubSpotWriter(api, HS_FIELDS)
    crm_id = emulator.insert("contacts", {"email": "ada@example.com", "hs_lead_status": "NEW"})
    writer.update_lead(LeadUpdate(hs_context(crm_id), crm_status="COMPLIANCE_HOLD"), "k1")
    [record] = [r for r in emulator.records("contacts") if r["id"] == crm_id]
    assert record["properties"]["hs_lead_status"] == "COMPLIANCE_HOLD"
    with pytest.raises(PermanentError, match="was not one of the allowed options"):
        writer.update_lead(LeadUpdate(hs_context(crm_id), crm_status="ON_ICE"), "k2")
    emulator.update_as_user("contacts", crm_id, {"hs_lead_status": "CONNECTED"})
    with pytest.raises(ConflictError, match="CONNECTED"):
        writer.update_lead(LeadUpdate(hs_context(crm_id), crm_status="NEW", expect_status="COMPLIANCE_HOLD"), "k3")
    [record] = [r for r in emulator.records("contacts") if r["id"] == crm_id]
    assert record["properties"]["hs_lead_status"] == "CONNECTED"


def test_hubspot_flagged_lead_is_held_in_the_crm_and_a_clear_puts_it_back_to_new(
        emulator: HubSpotEmulator, api: HubSpotApi, sessions: sessionmaker[Session], clock: Clock) -> None:
    ctx = ctx_with_policy(sessions)
    reader, writer = HubSpotReader(api, HS_FIELDS, clock=clock), HubSpotWriter(api, HS_FIELDS)
    writer.ensure_properties()
    ports = Ports(FakeNotifier(), {"hubspot": writer})
    crm_id = emulator.insert("contacts", {"email": "ada@example.com", "firstname": "Ada", "hs_lead_status": "NEW",
                                          "country": "Germany", "sanctions_match": "true"})
    clock.advance(60)
    poll(sessions, ctx, reader, clock())
    dispatch(sessions, ports, clock())

    def status() -> str:
        [record] = [r for r in emulator.records("contacts") if r["id"] == crm_id]
        return str(record["properties"]["hs_lead_status"])

    assert status() == "COMPLIANCE_HOLD"
    clock.advance(600)
    with transaction(sessions) as session:
        decide(session, ctx, "hubspot", crm_id, "clear", "carol", "screening false positive", clock())
    dispatch(sessions, ports, clock())
    assert status() == "NEW"


def test_hubspot_rejection_writes_the_reason_property_and_a_note(
        emulator: HubSpotEmulator, api: HubSpotApi, sessions: sessionmaker[Session], clock: Clock) -> None:
    from connectors.emulators.hubspot_store import PropertyDef

    emulator.store.property_defs["contacts"]["compliance_reason"] = PropertyDef(
        "compliance_reason", "Compliance reason", "string", "textarea", "contactinformation", hubspot_defined=False)
    fields = dataclasses.replace(HS_FIELDS, status_reason="compliance_reason")
    ctx = ctx_with_policy(sessions)
    reader, writer = HubSpotReader(api, fields, clock=clock), HubSpotWriter(api, fields)
    writer.ensure_properties()
    ports = Ports(FakeNotifier(), {"hubspot": writer})
    crm_id = emulator.insert("contacts", {"email": "ada@example.com", "hs_lead_status": "NEW",
                                          "sanctions_match": "true"})
    clock.advance(60)
    poll(sessions, ctx, reader, clock())
    dispatch(sessions, ports, clock())
    with transaction(sessions) as session:
        decide(session, ctx, "hubspot", crm_id, "reject", "carol", "adverse media confirmed", clock())
    dispatch(sessions, ports, clock())
    [record] = [r for r in emulator.records("contacts") if r["id"] == crm_id]
    assert record["properties"]["hs_lead_status"] == "DISQUALIFIED_COMPLIANCE"
    assert record["properties"]["compliance_reason"] == "adverse media confirmed"
    notes = [r for r in emulator.records("notes") if "adverse media confirmed" in r["properties"]["hs_note_body"]]
    assert len(notes) == 1 and "carol" in notes[0]["properties"]["hs_note_body"]


def test_tags_are_added_once_to_the_configured_field_in_both_crms(
        emu: SalesforceEmulator, client: SalesforceClient, emulator: HubSpotEmulator, api: HubSpotApi) -> None:
    from connectors.emulators.hubspot_store import PropertyDef

    emu.add_field("Lead", "Sidecar_Tags__c", "multipicklist")
    sf = SalesforceWriter(client, dataclasses.replace(SF_FIELDS, tags="Sidecar_Tags__c"))
    lead_id = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "Sidecar_Tags__c": "vip"})
    for _ in range(2):  # the second call is a replay: nothing to add
        sf.update_lead(LeadUpdate(sf_context(lead_id), add_tags=("churn-risk-elevated",)), "t1")
    assert emu.get("Lead", lead_id)["Sidecar_Tags__c"] == "vip;churn-risk-elevated"  # type: ignore[index]
    with pytest.raises(PermanentError, match=r"writer\.tags"):
        SalesforceWriter(client, SF_FIELDS).update_lead(LeadUpdate(sf_context(lead_id), add_tags=("x",)), "t2")

    emulator.store.property_defs["contacts"]["sidecar_tags"] = PropertyDef(
        "sidecar_tags", "Sidecar tags", "enumeration", "checkbox", "contactinformation", hubspot_defined=False,
        options=[{"label": v, "value": v, "hidden": False, "displayOrder": i}
                 for i, v in enumerate(("vip", "churn-risk-elevated"))])
    hs = HubSpotWriter(api, dataclasses.replace(HS_FIELDS, tags="sidecar_tags"))
    crm_id = emulator.insert("contacts", {"email": "ada@example.com", "sidecar_tags": "vip"})
    for _ in range(2):
        hs.update_lead(LeadUpdate(hs_context(crm_id), add_tags=("churn-risk-elevated",)), "t1")
    [record] = [r for r in emulator.records("contacts") if r["id"] == crm_id]
    assert record["properties"]["sidecar_tags"] == "vip;churn-risk-elevated"
    with pytest.raises(PermanentError, match="was not one of the allowed options"):
        hs.update_lead(LeadUpdate(hs_context(crm_id), add_tags=("unknown-tag",)), "t3")
