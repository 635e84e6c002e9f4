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

Every id is checked by shape before it is stored: HubSpot object ids are positive 64-bit integers.
Events with an id of another shape, from another portal, of an unknown type or for another object
are skipped and counted (`sidecar.web.counters`); the rest of the batch is stored, because HubSpot
does not retry a 400 and would drop the valid events with the bad one. A batch of any allowed size
is stored in one insert and acknowledged at once; reading the leads happens later (the drain).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sidecar.web.counters import SKIPPED
from sidecar.web.limits import media_type

log = logging.getLogger(__name__)

MAX_AGE_MS = 5 * 60 * 1000
# subscriptionType prefix -> the lead object type id it concerns; "object" (generic) carries its own.
LEGACY_TYPES = {"contact": "0-1", "lead": "0-136"}
MAX_DELIVERY_ID = 100  # the intake's column
MAX_OBJECT_ID = 2**63 - 1  # HubSpot ids are Java longs
_DIGITS = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)  # str.isdigit() and int() also take "²" and "٣"
_TIMESTAMP = re.compile(r"[0-9]{1,15}", re.ASCII)
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


def object_id(value: object) -> str | None:
    """A HubSpot object id as text, or None when `value` is not one: a positive integer below 2**63
    (JSON number, or its ASCII digits as a string), never a bool, float, null or object."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value <= MAX_OBJECT_ID else None
    if isinstance(value, str) and _DIGITS.fullmatch(value) and int(value) <= MAX_OBJECT_ID:
        return value
    return None


def timestamp_ms(header: str) -> int | None:
    """X-HubSpot-Request-Timestamp as milliseconds; None unless it is 1-15 ASCII digits."""
    return int(header) if _TIMESTAMP.fullmatch(header) else None


@dataclass
class Parsed:
    pairs: list[tuple[str, str]]
    skipped: Counter[str] = field(default_factory=Counter)
    events: int = 0


def _merged_ids(event: dict[str, Any], skipped: Counter[str]) -> list[str]:
    merged = event.get("mergedObjectIds") or []
    if not isinstance(merged, list):
        skipped["bad_object_id"] += 1
        return []
    ids = []
    for value in [event.get("primaryObjectId"), event.get("newObjectId"), *merged]:
        if value in (None, ""):
            continue
        text = object_id(value)
        if text is None:
            skipped["bad_object_id"] += 1
        else:
            ids.append(text)
    return list(dict.fromkeys(ids))


def parse_events(events: Any, object_type_id: str = "0-1", portal_id: str | None = None) -> Parsed:
    """(delivery id, object id) for events on the lead object (creation, propertyChange, deletion,
    merge...); generic `object.*` events only when their objectTypeId is `object_type_id`; only
    events of `portal_id` when it is given. ValueError when the body is not HubSpot's shape at all."""
    if not isinstance(events, list):
        raise ValueError("expected a JSON array of events")
    parsed = Parsed([], events=len(events))
    for event in events:
        if not isinstance(event, dict):
            raise ValueError("expected each event to be an object")
        if portal_id is not None and str(event.get("portalId")) != portal_id:
            parsed.skipped["wrong_portal"] += 1
            continue
        kind = event.get("subscriptionType")
        prefix = kind.split(".", 1)[0] if isinstance(kind, str) else ""
        type_id = str(event.get("objectTypeId") or "") if prefix == "object" else LEGACY_TYPES.get(prefix)
        if type_id is None:
            parsed.skipped["unknown_event_type"] += 1
            continue
        if type_id != object_type_id:
            parsed.skipped["other_object"] += 1
            continue
        lead_id = object_id(event.get("objectId"))
        if lead_id is None or "eventId" not in event:
            parsed.skipped["bad_object_id" if lead_id is None else "no_event_id"] += 1
            continue
        parsed.pairs.append((delivery_id(event), lead_id))
        parsed.pairs += [(delivery_id(event, i), i) for i in _merged_ids(event, parsed.skipped) if i != lead_id]
    return parsed


def lead_events(events: Any, object_type_id: str = "0-1") -> list[tuple[str, str]]:
    """The (delivery id, object id) pairs of `parse_events`, for callers that need no counts."""
    return parse_events(events, object_type_id).pairs


def _parse(body: bytes, object_type_id: str, portal_id: str | None) -> Parsed:
    try:
        return parse_events(json.loads(body), object_type_id, portal_id)
    except RecursionError:  # "[[[[...": json nests one Python frame per level
        raise ValueError("JSON nested too deeply") from None


def _parse_and_store(body: bytes, object_type_id: str, portal_id: str | None,
                     on_ids: Callable[[list[tuple[str, str]]], None]) -> Parsed | ValueError:
    """The parsed body after its pairs were stored, or why it is malformed (then nothing is stored).
    The store is called outside the parse's `try`: an error of ours (a ValueError too, say) must be a
    500, which HubSpot retries, not a 400 blaming the payload."""
    try:
        parsed = _parse(body, object_type_id, portal_id)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return exc
    if parsed.pairs:
        on_ids(parsed.pairs)
    return parsed


def hubspot_webhook_router(app_secret: str, on_ids: Callable[[list[tuple[str, str]]], None],
                           clock: Callable[[], float] = time.time,
                           public_base_url: str | None = None, object_type_id: str = "0-1",
                           portal_id: str | None = None, skipped: Counter[str] = SKIPPED) -> APIRouter:
    """`object_type_id`: the lead object's type id (FieldMap.type_id: 0-1 contacts, 0-136 leads);
    `portal_id`: events of any other portal (hub) are refused."""
    router = APIRouter()
    portal = str(portal_id).strip() if portal_id else None

    @router.post("/webhooks/hubspot", status_code=204)
    async def receive(request: Request) -> Response:
        timestamp = request.headers.get("x-hubspot-request-timestamp", "")
        given = request.headers.get("x-hubspot-signature-v3", "")
        sent_ms = timestamp_ms(timestamp)
        if sent_ms is None or abs(clock() * 1000 - sent_ms) > MAX_AGE_MS:
            return Response(status_code=401, content="stale, future, malformed or missing X-HubSpot-Request-Timestamp")
        body = await request.body()
        uri = signed_uri(_uri(request, public_base_url))
        expected = signature_v3(app_secret, request.method, uri, body, timestamp)
        if not given or not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
            return Response(status_code=401, content="bad X-HubSpot-Signature-v3")
        if media_type(request.headers.get("content-type")) != "application/json":  # after the signature:
            return Response(status_code=415, content="expected Content-Type: application/json")  # tells no stranger
        # One trip to a worker thread for parsing and storing: a large batch must not hold up the
        # event loop, and the store is synchronous. Stored durably before we acknowledge (an
        # exception -> 500 -> HubSpot retries).
        parsed = await run_in_threadpool(_parse_and_store, body, object_type_id, portal, on_ids)
        if isinstance(parsed, ValueError):
            return Response(status_code=400, content=f"malformed webhook body: {parsed}")
        if parsed.skipped:
            skipped.update({f"hubspot.{k}": n for k, n in parsed.skipped.items()})
            log.warning("HubSpot webhook: skipped %s", ", ".join(f"{n} {k}" for k, n in parsed.skipped.items()))
        if parsed.events and parsed.skipped["wrong_portal"] == parsed.events:
            return Response(status_code=403, content=f"events of another portal than {portal}")
        return Response(status_code=204)

    return router
