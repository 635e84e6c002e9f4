"""HubSpot webhooks v3 receiver: verify, parse, hand (delivery id, objectId) pairs to the intake.

The signature covers method + the full URI HubSpot called + raw body + timestamp. HubSpot decodes
some URL-encoded characters of the URI before signing (%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C
%3B, per its "validating requests" guide), so the URI is decoded the same way before we hash it.
The timestamp must lie within 5 minutes of our clock, in the past or the future. Behind a reverse
proxy or load balancer the URI the app sees (`request.url`: internal host, maybe http) differs from
the public one HubSpot signed, so `public_base_url` (e.g. https://sidecar.example.com) replaces
scheme and host when configured; path and query are kept as received.

Only ids leave this module: the reader then reads those leads, so a webhook and a poll can never
disagree. HubSpot documents `eventId` as "not guaranteed to be unique", so the delivery id the
core de-duplicates on is `subscriptionId:eventId:objectId:occurredAt` (a redelivery repeats all
four; two distinct events sharing an eventId differ in the others). Merge events
(`mergedObjectIds`, `primaryObjectId`, `newObjectId`) enqueue the winner and every merged id, each
under its own delivery id: the losers are read as archived and close. Generic `object.*` events
count only for the configured lead object (`objectTypeId`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

MAX_AGE_MS = 5 * 60 * 1000
# subscriptionType prefix -> the lead object type id it concerns; "object" (generic) carries its own.
LEGACY_TYPES = {"contact": "0-1", "lead": "0-136"}
MAX_DELIVERY_ID = 100  # the intake's column
_SIGNED_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                   "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_ENCODED = re.compile("|".join(_SIGNED_DECODED), re.IGNORECASE)


def signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the characters of its list decoded, everything else as sent."""
    return _ENCODED.sub(lambda m: _SIGNED_DECODED[m.group(0).upper()], uri)


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _uri(request: Request, public_base_url: str | None) -> str:
    if not public_base_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return public_base_url.rstrip("/") + request.url.path + query


def delivery_id(event: dict[str, Any], object_id: str | None = None) -> str:
    """What the core de-duplicates on (see the module docstring); `object_id` for the extra ids of
    a merge. Hashed only if it would not fit the intake's column."""
    parts = [event.get("subscriptionId"), event.get("eventId"), event.get("objectId"), event.get("occurredAt")]
    text = ":".join("" if p is None else str(p) for p in parts) + (f":{object_id}" if object_id else "")
    return text if len(text) <= MAX_DELIVERY_ID else hashlib.sha256(text.encode()).hexdigest()


def lead_events(events: Any, object_type_id: str = "0-1") -> list[tuple[str, str]]:
    """(delivery id, object id) for events on the lead object (creation, propertyChange, deletion,
    merge...); generic `object.*` events only when their objectTypeId is `object_type_id`."""
    if not isinstance(events, list):
        raise ValueError("expected a JSON array of events")
    pairs = []
    for event in events:
        if not isinstance(event, dict):
            raise ValueError("expected each event to be an object")
        kind = str(event.get("subscriptionType") or "")
        prefix = kind.split(".", 1)[0]
        type_id = str(event.get("objectTypeId") or "") if prefix == "object" else LEGACY_TYPES.get(prefix)
        if type_id != object_type_id or "eventId" not in event or "objectId" not in event:
            continue
        pairs.append((delivery_id(event), str(event["objectId"])))
        merged = [event.get("primaryObjectId"), event.get("newObjectId"), *(event.get("mergedObjectIds") or [])]
        extra = dict.fromkeys(str(i) for i in merged if i not in (None, ""))
        pairs += [(delivery_id(event, i), i) for i in extra if i != str(event["objectId"])]
    return pairs


def hubspot_webhook_router(app_secret: str, on_ids: Callable[[list[tuple[str, str]]], None],
                           clock: Callable[[], float] = time.time,
                           public_base_url: str | None = None, object_type_id: str = "0-1") -> APIRouter:
    """`object_type_id`: the lead object's type id (FieldMap.type_id: 0-1 contacts, 0-136 leads)."""
    router = APIRouter()

    @router.post("/webhooks/hubspot", status_code=204)
    async def receive(request: Request) -> Response:
        body = await request.body()
        timestamp = request.headers.get("x-hubspot-request-timestamp", "")
        given = request.headers.get("x-hubspot-signature-v3", "")
        if not timestamp.isdigit() or abs(clock() * 1000 - int(timestamp)) > MAX_AGE_MS:
            return Response(status_code=401, content="stale, future or missing X-HubSpot-Request-Timestamp")
        uri = signed_uri(_uri(request, public_base_url))
        expected = signature_v3(app_secret, request.method, uri, body, timestamp)
        if not given or not hmac.compare_digest(expected.encode(), given.encode()):
            return Response(status_code=401, content="bad X-HubSpot-Signature-v3")
        try:
            pairs = lead_events(json.loads(body), object_type_id)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return Response(status_code=400, content=f"malformed webhook body: {exc}")
        if pairs:
            # Stored durably before we acknowledge (an exception -> 500 -> HubSpot retries); in a
            # worker thread: the store is synchronous and must not block the event loop.
            await run_in_threadpool(on_ids, pairs)
        return Response(status_code=204)

    return router
