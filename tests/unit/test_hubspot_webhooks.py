"""HubSpot webhooks v3 receiver: signature, replay window, parsing, duplicates."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette warns at import when its TestClient runs on `httpx` (what the dev extra pins).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from connectors.emulators.hubspot import sign_v3
from connectors.hubspot.webhooks import hubspot_webhook_router

SECRET = "app-secret"
NOW = 1_714_986_000.0  # seconds
EVENTS = [
    {"eventId": 11, "subscriptionType": "contact.creation", "objectId": 501, "occurredAt": 1},
    {"eventId": 12, "subscriptionType": "contact.propertyChange", "objectId": 502,
     "propertyName": "hs_lead_status", "propertyValue": "OPEN"},
    {"eventId": 13, "subscriptionType": "deal.creation", "objectId": 900},
    {"eventId": 14, "subscriptionType": "contact.deletion", "objectId": 503},
]


class Harness:
    def __init__(self, public_base_url: str | None = None) -> None:
        self.received: list[list[tuple[str, str]]] = []
        app = FastAPI()
        app.include_router(hubspot_webhook_router(SECRET, self.received.append, clock=lambda: NOW,
                                                  public_base_url=public_base_url))
        self.client = TestClient(app)

    def post(self, events: Any, *, timestamp_ms: int | None = None, secret: str = SECRET,
             signed_uri: str = "http://testserver/webhooks/hubspot?portal=1",
             raw: bytes | None = None) -> int:
        body = raw if raw is not None else json.dumps(events).encode()
        stamp = str(timestamp_ms if timestamp_ms is not None else int(NOW * 1000))
        headers = {"X-HubSpot-Signature-v3": sign_v3(secret, "POST", signed_uri, body, stamp),
                   "X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json"}
        return self.client.post("/webhooks/hubspot?portal=1", content=body, headers=headers).status_code


def test_valid_delivery_passes_contact_event_ids_and_object_ids() -> None:
    harness = Harness()
    assert harness.post(EVENTS) == 204
    assert harness.received == [[("11", "501"), ("12", "502"), ("14", "503")]]


def test_duplicate_delivery_passes_the_same_event_ids_for_the_core_to_drop() -> None:
    harness = Harness()
    assert harness.post(EVENTS[:2]) == 204
    assert harness.post(EVENTS[:2]) == 204
    assert harness.received[0] == harness.received[1] == [("11", "501"), ("12", "502")]


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "missing_timestamp", "tampered"])
def test_bad_signature_or_stale_timestamp_is_401_and_nothing_is_enqueued(case: str) -> None:
    harness = Harness()
    if case == "wrong_secret":
        status = harness.post(EVENTS, secret="other")
    elif case == "stale":
        status = harness.post(EVENTS, timestamp_ms=int(NOW * 1000) - 5 * 60 * 1000 - 1)
    elif case == "missing_timestamp":
        status = harness.client.post("/webhooks/hubspot", content=b"[]",
                                     headers={"X-HubSpot-Signature-v3": "x"}).status_code
    else:
        body = json.dumps(EVENTS).encode()
        stamp = str(int(NOW * 1000))
        signature = sign_v3(SECRET, "POST", "http://testserver/webhooks/hubspot?portal=1", body, stamp)
        status = harness.client.post("/webhooks/hubspot?portal=1", content=body.replace(b"501", b"666"),
                                     headers={"X-HubSpot-Signature-v3": signature,
                                              "X-HubSpot-Request-Timestamp": stamp}).status_code
    assert status == 401
    assert harness.received == []


def test_timestamp_just_inside_the_window_is_accepted() -> None:
    harness = Harness()
    assert harness.post(EVENTS[:1], timestamp_ms=int(NOW * 1000) - 5 * 60 * 1000) == 204


def test_malformed_json_is_400() -> None:
    harness = Harness()
    assert harness.post(None, raw=b"[{not json") == 400
    assert harness.post({"eventId": 1}) == 400  # an object, not the array HubSpot sends
    assert harness.received == []


def test_behind_a_proxy_the_public_url_is_what_was_signed() -> None:
    public = "https://sidecar.example.com/webhooks/hubspot?portal=1"
    behind_proxy = Harness(public_base_url="https://sidecar.example.com/")
    assert behind_proxy.post(EVENTS[:1], signed_uri=public) == 204
    assert behind_proxy.received == [[("11", "501")]]
    direct = Harness()  # without the setting the internal URL is used, and the signature fails
    assert direct.post(EVENTS[:1], signed_uri=public) == 401
