"""HubSpot webhooks v3 receiver: signature, replay window, parsing, duplicates."""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette warns at import when its TestClient runs on `httpx` (what the dev extra pins).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from connectors.emulators.hubspot import sign_v3
from connectors.hubspot.webhooks import hubspot_webhook_router, lead_events, signed_uri

SECRET = "app-secret"
NOW = 1_714_986_000.0  # seconds
EVENTS = [
    {"eventId": 11, "subscriptionId": 7, "subscriptionType": "contact.creation", "objectId": 501, "occurredAt": 1},
    {"eventId": 12, "subscriptionId": 8, "subscriptionType": "contact.propertyChange", "objectId": 502,
     "propertyName": "hs_lead_status", "propertyValue": "OPEN", "occurredAt": 2},
    {"eventId": 13, "subscriptionId": 9, "subscriptionType": "deal.creation", "objectId": 900, "occurredAt": 3},
    {"eventId": 14, "subscriptionId": 10, "subscriptionType": "contact.deletion", "objectId": 503, "occurredAt": 4},
]
# Delivery ids: subscriptionId:eventId:objectId:occurredAt (eventId alone is not unique).
D11, D12, D14 = "7:11:501:1", "8:12:502:2", "10:14:503:4"


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
        return int(self.client.post("/webhooks/hubspot?portal=1", content=body, headers=headers).status_code)


def test_valid_delivery_passes_contact_event_ids_and_object_ids() -> None:
    harness = Harness()
    assert harness.post(EVENTS) == 204
    assert harness.received == [[(D11, "501"), (D12, "502"), (D14, "503")]]


def test_duplicate_delivery_passes_the_same_event_ids_for_the_core_to_drop() -> None:
    harness = Harness()
    assert harness.post(EVENTS[:2]) == 204
    assert harness.post(EVENTS[:2]) == 204
    assert harness.received[0] == harness.received[1] == [(D11, "501"), (D12, "502")]


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


def test_a_store_raising_valueerror_is_a_500_so_hubspot_retries() -> None:
    """The store's own ValueError is our fault, not the payload's: 400 would tell HubSpot not to retry."""
    def broken(pairs: list[tuple[str, str]]) -> None:
        raise ValueError("a value the database refused")

    app = FastAPI()
    app.include_router(hubspot_webhook_router(SECRET, broken, clock=lambda: NOW))
    body = json.dumps(EVENTS[:1]).encode()
    stamp = str(int(NOW * 1000))
    headers = {"X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", "http://testserver/webhooks/hubspot", body, stamp),
               "X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json"}
    response = TestClient(app, raise_server_exceptions=False).post("/webhooks/hubspot", content=body, headers=headers)
    assert response.status_code == 500


def test_behind_a_proxy_the_public_url_is_what_was_signed() -> None:
    public = "https://sidecar.example.com/webhooks/hubspot?portal=1"
    behind_proxy = Harness(public_base_url="https://sidecar.example.com/")
    assert behind_proxy.post(EVENTS[:1], signed_uri=public) == 204
    assert behind_proxy.received == [[(D11, "501")]]
    direct = Harness()  # without the setting the internal URL is used, and the signature fails
    assert direct.post(EVENTS[:1], signed_uri=public) == 401


def test_two_distinct_events_sharing_an_event_id_are_both_passed() -> None:
    harness = Harness()
    twins = [{"eventId": 99, "subscriptionId": 7, "subscriptionType": "contact.propertyChange",
              "objectId": 501, "occurredAt": 10},
             {"eventId": 99, "subscriptionId": 8, "subscriptionType": "contact.propertyChange",
              "objectId": 777, "occurredAt": 11}]
    assert harness.post(twins) == 204
    [first] = harness.received
    assert first == [("7:99:501:10", "501"), ("8:99:777:11", "777")]
    redelivered = [{**event, "attemptNumber": 1} for event in twins]
    assert harness.post(redelivered) == 204
    assert harness.received[1] == first  # a redelivery: same ids, dropped by the core


def test_generic_object_events_count_only_for_the_lead_object_type() -> None:
    harness = Harness()
    events = [{"eventId": 1, "subscriptionId": 3, "subscriptionType": "object.propertyChange",
               "objectTypeId": "0-1", "objectId": 501, "occurredAt": 5},
              {"eventId": 2, "subscriptionId": 3, "subscriptionType": "object.propertyChange",
               "objectTypeId": "0-3", "objectId": 900, "occurredAt": 5},  # a deal
              {"eventId": 3, "subscriptionId": 3, "subscriptionType": "object.creation", "objectId": 901,
               "occurredAt": 5}]  # no objectTypeId: not provably ours
    assert harness.post(events) == 204
    assert harness.received == [[("3:1:501:5", "501")]]
    leads = lead_events([{**events[0], "objectTypeId": "0-136"}], object_type_id="0-136")
    assert leads == [("3:1:501:5", "501")] and lead_events(events[:1], object_type_id="0-136") == []


def test_a_merge_enqueues_the_winner_and_every_merged_id_under_distinct_delivery_ids() -> None:
    harness = Harness()
    merge = {"eventId": 5, "subscriptionId": 4, "subscriptionType": "contact.merge", "objectId": 501,
             "primaryObjectId": 501, "mergedObjectIds": [502, 503], "newObjectId": 501, "occurredAt": 9}
    assert harness.post([merge]) == 204
    assert harness.received == [[("4:5:501:9", "501"), ("4:5:501:9:502", "502"), ("4:5:501:9:503", "503")]]


def test_a_timestamp_more_than_five_minutes_ahead_is_refused() -> None:
    harness = Harness()
    assert harness.post(EVENTS[:1], timestamp_ms=int(NOW * 1000) + 5 * 60 * 1000 + 1) == 401
    assert harness.post(EVENTS[:1], timestamp_ms=int(NOW * 1000) + 5 * 60 * 1000) == 204


def test_the_uri_is_verified_with_the_characters_hubspot_decodes_before_signing() -> None:
    harness = Harness()
    body = json.dumps(EVENTS[:1]).encode()
    stamp = str(int(NOW * 1000))
    sent = "/webhooks/hubspot?portal=1&tag=a%3Ab%40c%2Cd%2a%20e"
    hubspot_signed = "http://testserver/webhooks/hubspot?portal=1&tag=a:b@c,d*%20e"  # %20 is kept
    headers = {"X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", hubspot_signed, body, stamp),
               "X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json"}
    assert harness.client.post(sent, content=body, headers=headers).status_code == 204
    assert signed_uri("https://x/h?q=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B%20") == "https://x/h?q=:/?@!$'()*,;%20"


def test_on_ids_runs_outside_the_event_loop_thread() -> None:
    threads: list[str] = []
    app = FastAPI()
    app.include_router(hubspot_webhook_router(SECRET, lambda pairs: threads.append(
        threading.current_thread().name), clock=lambda: NOW))
    client = TestClient(app)
    body = json.dumps(EVENTS[:1]).encode()
    stamp = str(int(NOW * 1000))
    headers = {"X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", "http://testserver/webhooks/hubspot", body,
                                                 stamp), "X-HubSpot-Request-Timestamp": stamp,
               "Content-Type": "application/json"}
    loop_thread: list[str] = []

    @app.get("/loop")
    async def loop() -> dict[str, str]:
        loop_thread.append(threading.current_thread().name)
        return {}

    assert client.post("/webhooks/hubspot", content=body, headers=headers).status_code == 204
    client.get("/loop")
    assert len(threads) == 1 and threads[0] != loop_thread[0]
