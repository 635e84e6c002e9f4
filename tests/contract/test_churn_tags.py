"""Churn tags (LeadUpdate.add_tags) written by both CRM writers against their emulators."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.hubspot import fields as hubspot_fields
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.writer import HubSpotWriter
from connectors.salesforce import fields as salesforce_fields
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm
from sidecar.ports import LeadContext, LeadUpdate, PermanentError
from tests.contract.harness import Clock, Serve

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
TAG = "churn-risk-elevated"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    emulator.add_field("Lead", "Sidecar_Tags__c", "string")
    return serve(emulator, tls.server_context)


def update(crm: Crm, crm_id: str, *tags: str) -> LeadUpdate:
    lead = LeadContext(crm, crm_id, "Ada", "Engines", None, None, None, "CONTACTED", None, None, "https://x")
    return LeadUpdate(lead=lead, add_tags=tags, reason="churn risk: usage_drop")


def patches(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in entries if e["method"] == "PATCH"]


def test_salesforce_adds_the_tag_once_and_keeps_existing_values(emu: SalesforceEmulator,
                                                                 client: SalesforceClient) -> None:
    writer = SalesforceWriter(client, salesforce_fields.FieldMap(tags="Sidecar_Tags__c"))
    lead_id = emu.insert("Lead", {"FirstName": "Ada", "LastName": "L", "Company": "Engines",
                                  "Sidecar_Tags__c": "vip"})
    emu.log.clear()
    writer.update_lead(update(Crm.SALESFORCE, lead_id, TAG), "signal:1:tag")
    writer.update_lead(update(Crm.SALESFORCE, lead_id, TAG), "signal:1:tag")  # a retry
    assert emu.get("Lead", lead_id)["Sidecar_Tags__c"] == f"vip;{TAG}"  # type: ignore[index]
    assert len(patches(emu.log.entries)) == 1


def test_salesforce_without_a_tags_field_says_what_to_configure(emu: SalesforceEmulator,
                                                                 client: SalesforceClient) -> None:
    lead_id = emu.insert("Lead", {"FirstName": "Ada", "LastName": "L", "Company": "Engines"})
    with pytest.raises(PermanentError, match=r"writer\.tags"):
        SalesforceWriter(client, salesforce_fields.FieldMap()).update_lead(update(Crm.SALESFORCE, lead_id, TAG), "k")
    with pytest.raises(PermanentError):  # a field the org does not have is refused by Salesforce
        SalesforceWriter(client, salesforce_fields.FieldMap(tags="Nope__c")).update_lead(
            update(Crm.SALESFORCE, lead_id, TAG), "k")


@pytest.fixture
def hs(emulator: HubSpotEmulator, api: HubSpotApi) -> HubSpotWriter:
    api.call("general", "crm.properties.core_api", "create", "contacts", {
        "name": "sidecar_tags", "label": "Sidecar tags", "type": "enumeration", "fieldType": "checkbox",
        "groupName": "contactinformation",
        "options": [{"label": "Churn risk", "value": TAG}, {"label": "VIP", "value": "vip"}]},
        scope="crm.schemas.contacts.write")
    return HubSpotWriter(api, hubspot_fields.FieldMap(tags="sidecar_tags"))


def test_hubspot_adds_the_tag_once_and_keeps_existing_values(emulator: HubSpotEmulator, hs: HubSpotWriter) -> None:
    contact = emulator.insert("contacts", {"email": "ada@example.com", "sidecar_tags": "vip"})
    emulator.log.clear()
    hs.update_lead(update(Crm.HUBSPOT, contact, TAG), "signal:1:tag")
    hs.update_lead(update(Crm.HUBSPOT, contact, TAG), "signal:1:tag")
    [record] = [r for r in emulator.records("contacts") if str(r["id"]) == contact]
    assert record["properties"]["sidecar_tags"] == f"vip;{TAG}"
    assert len(patches(emulator.log.entries)) == 1


def test_hubspot_refuses_a_tag_that_is_not_an_option_of_the_property(emulator: HubSpotEmulator,
                                                                     hs: HubSpotWriter) -> None:
    contact = emulator.insert("contacts", {"email": "ada@example.com"})
    with pytest.raises(PermanentError, match="allowed options"):
        hs.update_lead(update(Crm.HUBSPOT, contact, "not-an-option"), "k")
