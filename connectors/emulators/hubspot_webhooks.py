"""Webhooks v3 delivery of the HubSpot emulator.

HubSpot batches queued events (up to 100) into one POST whose body is a JSON array, signs it and
retries batches the receiver did not acknowledge with a 2xx. Here delivery is explicit
(`WebhookOutbox.deliver`) so tests and the demo decide when it happens, on virtual time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

MAX_BATCH = 100
# HubSpot gives up on an event after this many attempts (spread over 24h in production).
MAX_ATTEMPTS = 10


def sign_v3(secret: str, method: str, uri: str, body: bytes | str, timestamp_ms: int | str) -> str:
    """X-HubSpot-Signature-v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp))."""
    raw = body.decode() if isinstance(body, bytes) else body
    message = f"{method}{uri}{raw}{timestamp_ms}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# HubSpot decodes these in the request URI before signing (its "validating requests" guide).
_DECODED_BEFORE_SIGNING = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                           "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def uri_as_signed(uri: str) -> str:
    return re.sub("|".join(_DECODED_BEFORE_SIGNING), lambda m: _DECODED_BEFORE_SIGNING[m.group(0).upper()],
                  uri, flags=re.IGNORECASE)


def sign_v1(secret: str, body: bytes | str) -> str:
    """Legacy X-HubSpot-Signature (v1): hex SHA-256 of secret + body; sent alongside v3."""
    raw = body.decode() if isinstance(body, bytes) else body
    return hashlib.sha256(f"{secret}{raw}".encode()).hexdigest()


@dataclass(frozen=True)
class Subscription:
    id: int
    object_name: str  # singular, as in "contact.propertyChange"
    event: str  # "creation", "propertyChange", "deletion"
    property_name: str | None  # propertyChange subscriptions may watch a single property

    @property
    def subscription_type(self) -> str:
        return f"{self.object_name}.{self.event}"


def parse_subscriptions(specs: Sequence[str], first_id: int) -> list[Subscription]:
    """"contact.creation", "contact.propertyChange" (every property) or
    "contact.propertyChange:hs_lead_status" (one property, as HubSpot subscriptions are)."""
    subscriptions = []
    for offset, spec in enumerate(specs):
        kind, _, prop = spec.partition(":")
        object_name, _, event = kind.partition(".")
        if event not in ("creation", "propertyChange", "deletion", "merge"):
            raise ValueError(f"unsupported subscription {spec!r}")
        subscriptions.append(Subscription(first_id + offset, object_name, event, prop or None))
    return subscriptions


@dataclass
class WebhookOutbox:
    url: str
    client_secret: str
    portal_id: int
    app_id: int
    subscriptions: list[Subscription]
    clock: Callable[[], datetime]
    pending: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    _next_event_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue(
        self,
        object_name: str,
        event: str,
        object_id: int,
        *,
        occurred_at: datetime,
        change_source: str,
        property_name: str | None = None,
        property_value: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        for sub in self.subscriptions:
            if sub.object_name != object_name or sub.event != event:
                continue
            if sub.property_name is not None and sub.property_name != property_name:
                continue
            payload: dict[str, Any] = {
                "eventId": self._next_event_id,
                "subscriptionId": sub.id,
                "portalId": self.portal_id,
                "appId": self.app_id,
                "occurredAt": int(occurred_at.timestamp() * 1000),
                "subscriptionType": sub.subscription_type,
                "attemptNumber": 0,
                "objectId": object_id,
                "changeSource": change_source,
            }
            if event == "propertyChange":
                payload["propertyName"] = property_name
                payload["propertyValue"] = property_value or ""
            elif event == "creation":
                payload["changeFlag"] = "CREATED"
            elif event == "merge":
                payload["changeFlag"] = "MERGED"
            else:
                payload["changeFlag"] = "DELETED"
            payload.update(extra or {})
            with self._lock:
                self._next_event_id += 1
                self.pending.append(payload)

    def deliver(self, session: requests.Session | None = None) -> int:
        """POST every pending batch once; returns how many events the receiver acknowledged.

        A batch answered with non-2xx (or a connection error) stays queued with attemptNumber + 1
        and delivery stops for this round, as a real retry would only come later."""
        http = session or requests.Session()
        acknowledged = 0
        try:
            while True:
                with self._lock:
                    batch = self.pending[:MAX_BATCH]
                if not batch:
                    return acknowledged
                if self._post(http, batch):
                    with self._lock:
                        del self.pending[: len(batch)]
                        self.delivered.extend(batch)
                    acknowledged += len(batch)
                    continue
                with self._lock:
                    for event in batch:
                        event["attemptNumber"] += 1
                    self.dead.extend(e for e in batch if e["attemptNumber"] >= MAX_ATTEMPTS)
                    self.pending = [e for e in self.pending if e["attemptNumber"] < MAX_ATTEMPTS]
                return acknowledged
        finally:
            if session is None:
                http.close()

    def _post(self, http: requests.Session, batch: list[dict[str, Any]]) -> bool:
        body = json.dumps(batch, separators=(",", ":")).encode()
        timestamp = int(self.clock().timestamp() * 1000)
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(self.client_secret, "POST", uri_as_signed(self.url), body,
                                              timestamp),
            "X-HubSpot-Request-Timestamp": str(timestamp),
            "X-HubSpot-Signature": sign_v1(self.client_secret, body),
            "X-HubSpot-Signature-Version": "v1",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (emulator)",
        }
        try:
            response = http.post(self.url, data=body, headers=headers, timeout=10)
        except requests.RequestException:
            return False
        return 200 <= response.status_code < 300
