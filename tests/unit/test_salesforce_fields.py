"""The field map: YAML as data, every problem reported at once, values mapped."""

from __future__ import annotations

import pytest

from connectors.salesforce.fields import SYSTEM_FIELDS, FieldMap, load_field_map, parse_field_map
from connectors.salesforce.mapping import Related, to_snapshot
from sidecar.domain import Intent, ProgressKind
from tests.conftest import ROOT

EXAMPLE = ROOT / "config" / "salesforce.fields.example.yaml"


def test_example_file_loads_and_selects_system_fields_first() -> None:
    fields = load_field_map(EXAMPLE)
    assert fields.lead_fields()[: len(SYSTEM_FIELDS)] == list(SYSTEM_FIELDS)
    assert fields.market.map["Germany"] == "DACH" and fields.source.map["Web"] == "web_form"
    assert fields.task_kinds == {"Call": ProgressKind.CALL_LOGGED, "Email": ProgressKind.EMAIL_SENT}
    assert fields.key_field == "Sidecar_Key__c"


def test_all_problems_are_reported_together() -> None:
    raw = {
        "lead": {"name": [], "flags": ["not", "a", "map"], "score": "Score; DROP"},
        "activities": {"task_kinds": {"Call": "phoned"}},
    }
    with pytest.raises(ValueError) as caught:
        parse_field_map(raw, "fields.yaml")
    text = str(caught.value)
    assert "fields.yaml: lead.name" in text and "lead.flags" in text
    assert (
        "activities.task_kinds.Call: 'phoned'" in text and "'Score; DROP' is not a Salesforce field" in text
    )


def test_record_mapping_with_custom_fields() -> None:
    fields = parse_field_map(
        {
            "lead": {
                "name": "Name",
                "market": {"field": "Market__c", "map": {"North America": "US-East"}},
                "intent": {"field": "Intent__c", "map": {"Hot": "high"}},
                "score": "Score__c",
                "deal_size": "Deal__c",
                "tier": "Tier__c",
                "flags": {"Sanctions_Match__c": "sanctions_match", "VIP__c": "vip"},
            }
        }
    )
    record = {
        "Id": "00Q1",
        "Name": "Ada Lovelace",
        "Company": "Engines",
        "Market__c": "North America",
        "LeadSource": "Trade Show",
        "Status": "Open - Not Contacted",
        "OwnerId": "00G1",
        "Intent__c": "Hot",
        "Score__c": 72,
        "Deal__c": 50000.0,
        "Tier__c": "A",
        "Sanctions_Match__c": True,
        "VIP__c": False,
        "SystemModstamp": "2026-11-25T08:00:00.000+0000",
        "CreatedDate": "2026-11-25T07:00:00.000+0000",
        "IsConverted": False,
        "IsDeleted": False,
    }
    snap = to_snapshot(record, fields, Related())
    assert (snap.name, snap.market, snap.source, snap.intent) == (
        "Ada Lovelace",
        "US-East",
        "Trade Show",
        Intent.HIGH,
    )
    assert (snap.score, snap.deal_size, snap.tier, snap.owner_id) == (72.0, 50000.0, "A", "00G1")
    assert snap.flags == frozenset({"sanctions_match"})
    assert snap.status_changed_at == snap.created_at  # no history rows: unchanged since creation
    assert to_snapshot({**record, "IsConverted": True}, fields, Related()).crm_status == "Closed - Converted"
    assert to_snapshot({**record, "Intent__c": "Lukewarm"}, FieldMap(), Related()).intent is None
