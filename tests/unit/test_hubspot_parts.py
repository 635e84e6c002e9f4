"""Unit tests of the HubSpot connector's pure parts: rate gates, 429 waits, error mapping,
field map loading and record mapping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.hubspot.errors import Rejected, Uncertain, translate
from connectors.hubspot.fields import FieldMap, ValueMap, load_field_map
from connectors.hubspot.limits import RollingGate, retry_after_seconds
from connectors.hubspot.mapping import entered_current_value, to_snapshot
from sidecar.domain import Intent
from sidecar.ports import PermanentError, TransientError
from tests.support import VirtualTime

ROOT = Path(__file__).resolve().parents[2]


def test_rolling_gate_never_exceeds_its_limit_in_any_window() -> None:
    time = VirtualTime()
    gate = RollingGate(5, 1.0, time.clock, time.sleep)
    sent = []
    for _ in range(23):
        gate.acquire()
        sent.append(time.now)
        time.now += 0.05
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t - start < 1.0) <= 5
    assert time.slept and gate.waited == pytest.approx(sum(time.slept))


def test_429_wait_comes_from_retry_after_policy_or_interval_header() -> None:
    assert retry_after_seconds({"Retry-After": "3"}, {}) == 3.0
    assert retry_after_seconds({}, {"policyName": "SECONDLY"}) == 1.0
    assert retry_after_seconds({"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
                               {"policyName": "TEN_SECONDLY_ROLLING"}) == 10.0


@dataclass
class FakeApiException(Exception):
    status: int
    body: bytes = b""
    reason: str = ""


@pytest.mark.parametrize(("status", "body", "kind", "text"), [
    # 5xx and no answer: worth retrying, but a create may have been applied (Uncertain is transient)
    (503, b'{"message": "down"}', Uncertain, "HTTP 503"),
    (0, b"", Uncertain, "connection error"),
    (401, b'{"category": "EXPIRED_AUTHENTICATION"}', PermanentError, "private app"),
    (403, b'{"errors": [{"context": {"requiredGranularScopes": ["crm.objects.contacts.write"]}}]}',
     PermanentError, "missing scope crm.objects.contacts.write"),
    (400, b'{"category": "VALIDATION_ERROR", "message": "Property values were not valid"}', Rejected,
     "Property values were not valid"),
])
def test_error_mapping(status: int, body: bytes, kind: type[Exception], text: str) -> None:
    error = translate(FakeApiException(status, body), "tasks.create")
    assert type(error) is kind
    assert isinstance(error, TransientError) == (status == 0 or status >= 500)  # retried by the dispatcher
    assert text in str(error)


def test_example_field_map_loads_and_unknown_keys_are_reported(tmp_path: Path) -> None:
    fields = load_field_map(ROOT / "config" / "hubspot.fields.example.yaml")
    assert fields.object == "contacts" and fields.modified_property == "lastmodifieddate"
    assert fields.market.apply("Germany") == "DACH" and fields.source.apply("PAID_SOCIAL") == "paid_social"
    assert FieldMap(object="leads").modified_property == "hs_lastmodifieddate"
    bad = tmp_path / "f.yaml"
    bad.write_text("properties: {stauts: hs_lead_status}\n")
    with pytest.raises(ValueError, match="stauts"):
        load_field_map(bad)


def test_entered_current_value_skips_resets_of_the_same_value() -> None:
    history = [{"value": "OPEN", "timestamp": "2024-05-06T10:00:00Z"},
               {"value": "OPEN", "timestamp": "2024-05-06T09:30:00Z"},
               {"value": "NEW", "timestamp": "2024-05-06T09:00:00Z"}]
    assert entered_current_value(history) == datetime(2024, 5, 6, 9, 30, tzinfo=UTC)
    assert entered_current_value([]) is None


def test_record_maps_to_snapshot() -> None:
    fields = FieldMap(intent="intent", deal_size="amount", flags={"vip": "vip"},
                      source=ValueMap("src", {"PAID_SOCIAL": "paid_social"}))
    record = {"id": "7", "properties": {"firstname": "Ada", "lastname": "L", "hs_lead_status": "NEW",
                                        "lastmodifieddate": "1714986000000", "intent": "High",
                                        "amount": "1200.5", "src": "PAID_SOCIAL", "vip": "false",
                                        "hubspotscore": "", "createdate": "2024-05-06T08:00:00.000Z"}}
    snap = to_snapshot(record, fields)
    assert (snap.crm_id, snap.name, snap.crm_status, snap.intent) == ("7", "Ada L", "NEW", Intent.HIGH)
    assert snap.crm_modified_at == datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
    assert (snap.deal_size, snap.score, snap.source, snap.flags) == (1200.5, None, "paid_social", frozenset())
