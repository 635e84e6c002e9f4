"""The Outbound Message receiver: verify the sender, hand ids over, then (only then) acknowledge."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette warns at import when its TestClient runs on `httpx` (what the dev extra pins).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from connectors.emulators.salesforce_outbound import OutboundQueue
from connectors.emulators.soql_lexer import to_18
from connectors.salesforce.outbound import OutboundRefused, org_id_18, salesforce_outbound_router, same_org

ORG_15 = "00DHp0000000001"
ORG_18 = to_18(ORG_15)  # Salesforce's own suffix: the receiver checks it
LEAD_1, LEAD_2 = to_18("00QHp0000000001"), to_18("00QHp0000000002")
XML = {"Content-Type": "text/xml; charset=utf-8"}  # what Salesforce sends


def envelope(org_id: str = ORG_18, ids: tuple[str, ...] = (LEAD_1, LEAD_2)) -> bytes:
    """A message exactly as the emulator's outbound queue renders it for Salesforce."""
    queue = OutboundQueue(lambda: datetime(2026, 11, 25, tzinfo=UTC))
    queue.configure("http://unused", org_id, ["Id", "Status"], "on lead change")
    for lead_id in ids:
        queue.on_change("Lead", None, {"Id": lead_id, "Status": "Open - Not Contacted"})
    return queue.envelope(queue.pending[0])


@pytest.fixture
def received() -> list[list[tuple[str, str]]]:
    return []


@pytest.fixture
def client(received: list[list[tuple[str, str]]]) -> TestClient:
    app = FastAPI()
    app.include_router(salesforce_outbound_router(ORG_15, received.append))
    return TestClient(app)


def test_valid_message_passes_ids_then_acks(
    client: TestClient, received: list[list[tuple[str, str]]]
) -> None:
    response = client.post("/webhooks/salesforce", content=envelope(), headers=XML)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    assert "<Ack>true</Ack>" in response.text
    [pairs] = received
    assert [record for _, record in pairs] == [LEAD_1, LEAD_2]
    assert all(note.startswith("04l") for note, _ in pairs) and len({n for n, _ in pairs}) == 2


def test_wrong_org_is_403_and_nothing_passed(
    client: TestClient, received: list[list[tuple[str, str]]]
) -> None:
    response = client.post("/webhooks/salesforce", content=envelope(to_18("00DHp0000000999")), headers=XML)
    assert response.status_code == 403 and "soapenv:Fault" in response.text
    assert "<Ack>" not in response.text and received == []


@pytest.mark.parametrize(
    "body",
    [
        b"<not xml",
        b"<a>no notifications here</a>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
    ],
)
def test_malformed_is_400_and_nothing_passed(
    client: TestClient, received: list[list[tuple[str, str]]], body: bytes
) -> None:
    response = client.post("/webhooks/salesforce", content=body, headers=XML)
    assert response.status_code == 400 and "soapenv:Fault" in response.text and received == []


# A refusal raised inside the store (a ValueError, like the parser's refusals) is ours, not the message's.
@pytest.mark.parametrize("error", [RuntimeError("database down"), OutboundRefused(400, "raised inside the store")])
def test_a_failing_store_means_no_ack(error: Exception) -> None:
    def broken(pairs: list[tuple[str, str]]) -> None:
        raise error

    app = FastAPI()
    app.include_router(salesforce_outbound_router(ORG_18, broken))
    response = TestClient(app, raise_server_exceptions=False).post("/webhooks/salesforce", content=envelope(),
                                                                      headers=XML)
    assert response.status_code == 500 and "<Ack>true</Ack>" not in response.text


def test_org_ids_compare_on_all_18_characters() -> None:
    assert org_id_18(ORG_15) == org_id_18(ORG_18) == ORG_18  # a configured 15-char id gets its suffix
    assert same_org(ORG_18, ORG_18)
    assert not same_org(ORG_15, ORG_18)  # Salesforce always sends 18 characters
    assert not same_org(ORG_15 + "ZZZ", ORG_18)  # the first 15 alone do not make the org
    assert not same_org(ORG_18.lower(), ORG_18)  # ids are case-sensitive
    assert not same_org("", ORG_18)
    with pytest.raises(ValueError, match="SIDECAR_SF_ORGANIZATION_ID"):
        org_id_18("00QHp0000000001")  # a lead id, not an org id


def test_bytes_that_are_not_utf8_in_one_field_do_not_cost_the_message(
    client: TestClient, received: list[list[tuple[str, str]]]
) -> None:
    """A Latin-1 "é" (0xE9) in one lead's Status makes the message malformed UTF-8: the ids are still
    read (they are ASCII) and acknowledged, instead of a fault Salesforce would answer by re-sending
    the whole message, valid notifications included, for 24 hours."""
    body = envelope(ids=(LEAD_1, LEAD_2, to_18("00QHp0000000003")))
    assert body.count(b"Open - Not Contacted") == 3
    bad = body.replace(b"Open - Not Contacted", b"Ouvert - Non contact\xe9", 1)
    response = client.post("/webhooks/salesforce", content=bad, headers=XML)
    assert response.status_code == 200 and "<Ack>true</Ack>" in response.text
    [pairs] = received
    assert [record for _, record in pairs] == [LEAD_1, LEAD_2, to_18("00QHp0000000003")]


def test_a_stray_byte_in_one_id_skips_that_notification_only(
    client: TestClient, received: list[list[tuple[str, str]]]
) -> None:
    body = envelope(ids=(LEAD_1, LEAD_2)).replace(LEAD_2.encode(), LEAD_2[:-1].encode() + b"\xff", 1)
    response = client.post("/webhooks/salesforce", content=body, headers=XML)
    assert response.status_code == 200
    assert [record for _, record in received[0]] == [LEAD_1]


def test_a_dtd_is_still_refused_when_the_body_is_also_not_utf8(
    client: TestClient, received: list[list[tuple[str, str]]]
) -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;\xe9</x>'
    response = client.post("/webhooks/salesforce", content=body, headers=XML)
    assert response.status_code == 400 and "DTD" in response.text and received == []
