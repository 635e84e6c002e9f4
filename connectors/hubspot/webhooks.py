"""HubSpot webhooks v3 receiver: verify, parse, hand (eventId, objectId) pairs to the intake.

The signature covers method + the full URI HubSpot called + raw body + timestamp. Behind a
reverse proxy or load balancer the URI the app sees (`request.url`: internal host, maybe http)
differs from the public one HubSpot signed, so `public_base_url` (e.g. https://sidecar.example.com)
replaces scheme and host when configured; path and query are kept as received.

Only ids leave this module: the reader then reads those leads, so a webhook and a poll can never
disagree. Events are passed with their eventId so the core can drop duplicate deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

MAX_AGE_MS = 5 * 60 * 1000
LEAD_OBJECTS = ("contact", "lead", "object")  # subscriptionType prefixes we act on


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _uri(request: Request, public_base_url: str | None) -> str:
    if not public_base_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return public_base_url.rstrip("/") + request.url.path + query


def lead_events(events: Any) -> list[tuple[str, str]]:
    """(eventId, objectId) for lead-object events (creation, propertyChange, deletion, merge...)."""
    if not isinstance(events, list):
        raise ValueError("expected a JSON array of events")
    pairs = []
    for event in events:
        if not isinstance(event, dict):
            raise ValueError("expected each event to be an object")
        kind = str(event.get("subscriptionType") or "")
        if kind.split(".", 1)[0] not in LEAD_OBJECTS or "eventId" not in event or "objectId" not in event:
            continue
        pairs.append((str(event["eventId"]), str(event["objectId"])))
    return pairs


def hubspot_webhook_router(app_secret: str, on_ids: Callable[[list[tuple[str, str]]], None],
                           clock: Callable[[], float] = time.time,
                           public_base_url: str | None = None) -> APIRouter:
    router = APIRouter()

    @router.post("/webhooks/hubspot", status_code=204)
    async def receive(request: Request) -> Response:
        body = await request.body()
        timestamp = request.headers.get("x-hubspot-request-timestamp", "")
        given = request.headers.get("x-hubspot-signature-v3", "")
        if not timestamp.isdigit() or clock() * 1000 - int(timestamp) > MAX_AGE_MS:
            return Response(status_code=401, content="stale or missing X-HubSpot-Request-Timestamp")
        expected = signature_v3(app_secret, request.method, _uri(request, public_base_url), body, timestamp)
        if not given or not hmac.compare_digest(expected.encode(), given.encode()):
            return Response(status_code=401, content="bad X-HubSpot-Signature-v3")
        try:
            pairs = lead_events(json.loads(body))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return Response(status_code=400, content=f"malformed webhook body: {exc}")
        if pairs:
            on_ids(pairs)  # stored durably before we acknowledge; an exception -> 500 -> HubSpot retries
        return Response(status_code=204)

    return router
