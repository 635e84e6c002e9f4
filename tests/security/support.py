"""The app as `sidecar run` builds it (every receiver, the admin API, the body limit), on the test
database, plus helpers that sign or render requests the way HubSpot, Salesforce and Slack do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections import Counter
from datetime import UTC
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    # Starlette warns at import when its TestClient runs on `httpx` (what the dev extra pins).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from connectors.emulators.soql_lexer import to_18
from connectors.hubspot.webhooks import hubspot_webhook_router
from connectors.salesforce.outbound import OUTBOUND_NS, salesforce_outbound_router
from connectors.slack.actions import slack_actions_router
from sidecar.store.db import transaction
from sidecar.store.models import IntakeItem
from sidecar.web.admin import admin_router
from sidecar.web.app import create_app, intake_callback
from tests.support import context, ny

HUBSPOT_SECRET, SLACK_SECRET, ADMIN_TOKEN = "hs-app-secret", "slack-signing-secret", "admin-token-123"
PORTAL = "4242"
ORG_18 = to_18("00DHp0000000001")
NOW = 1_764_000_000.0  # the receivers' injected clock, seconds
HUBSPOT_URL = "http://testserver/webhooks/hubspot"


class App:
    """Every intake of the app on one database; `skipped` counts what the receivers ignored."""

    def __init__(self, sessions: sessionmaker[Session], max_body_bytes: int = 5 * 1024 * 1024) -> None:
        self.sessions, self.skipped, self.clicks = sessions, Counter[str](), list[Any]()
        routers = [
            hubspot_webhook_router(HUBSPOT_SECRET, intake_callback(sessions, "hubspot", lambda: ny(24, 8)),
                                   clock=lambda: NOW, portal_id=PORTAL, skipped=self.skipped),
            salesforce_outbound_router(ORG_18[:15], intake_callback(sessions, "salesforce", lambda: ny(24, 8)),
                                       skipped=self.skipped),
            slack_actions_router(SLACK_SECRET, self.clicks.append, clock=lambda: NOW, submit=lambda f: f()),
            admin_router(sessions, context(), ADMIN_TOKEN, clock=lambda: ny(24, 8).astimezone(UTC)),
        ]
        self.app: FastAPI = create_app(sessions, routers, max_body_bytes=max_body_bytes)
        self.client = TestClient(self.app, raise_server_exceptions=False)

    def intake(self, crm: str | None = None) -> list[tuple[str, str, str]]:
        with transaction(self.sessions) as session:
            query = select(IntakeItem).order_by(IntakeItem.id)
            if crm is not None:
                query = query.where(IntakeItem.crm == crm)
            return [(row.crm, row.delivery_id, row.crm_id) for row in session.scalars(query)]

    def hubspot(self, events: Any = None, *, raw: bytes | None = None, stamp: str | None = None,
                content_type: str = "application/json", secret: str = HUBSPOT_SECRET) -> int:
        body = raw if raw is not None else json.dumps(events).encode()
        stamp = stamp if stamp is not None else str(int(NOW * 1000))
        headers = {"X-HubSpot-Signature-v3": sign_hubspot(secret, body, stamp),
                   "X-HubSpot-Request-Timestamp": raw_header(stamp), "Content-Type": content_type}
        return int(self.client.post("/webhooks/hubspot", content=body, headers=headers).status_code)

    def salesforce(self, body: bytes, content_type: str = "text/xml; charset=utf-8") -> int:
        response = self.client.post("/webhooks/salesforce", content=body, headers={"Content-Type": content_type})
        return int(response.status_code)

    def slack(self, body: bytes, *, stamp: str | None = None, secret: str = SLACK_SECRET,
              content_type: str = "application/x-www-form-urlencoded") -> int:
        stamp = stamp if stamp is not None else str(int(NOW))
        signature = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"X-Slack-Request-Timestamp": raw_header(stamp), "X-Slack-Signature": signature,
                   "Content-Type": content_type}
        return int(self.client.post("/slack/actions", content=body, headers=headers).status_code)


def sign_hubspot(secret: str, body: bytes, stamp: str) -> str:
    """HubSpot's v3 signature over raw bytes (the emulator's signer wants text bodies)."""
    message = b"POST" + HUBSPOT_URL.encode() + body + stamp.encode("utf-8", "replace")
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def raw_header(value: str) -> bytes:
    """Header bytes as a hostile client sends them: Latin-1 where possible (the server decodes
    headers as Latin-1, so b"\xb2" arrives as "²", which str.isdigit() accepts), else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def hubspot_event(event_id: int, object_id: Any = 501, kind: str = "contact.propertyChange",
                  portal: Any = int(PORTAL), **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "subscriptionId": 7, "portalId": portal, "appId": 1, "occurredAt": 1_764_000_000_000,
            "subscriptionType": kind, "attemptNumber": 0, "objectId": object_id, "changeSource": "CRM_UI",
            "propertyName": "hs_lead_status", "propertyValue": "OPEN", **extra}


def soap(lead_ids: list[str], org_id: str = ORG_18, note_ids: list[str] | None = None,
         encoding: str = "UTF-8", prolog: str = "") -> bytes:
    """An Outbound Message in Salesforce's shape (any number of notifications: Salesforce sends at
    most 100, a forger as many as the body limit allows)."""
    notes = note_ids or [to_18(f"04lHp{i:010d}") for i in range(len(lead_ids))]
    body = "".join(f'<Notification><Id>{n}</Id><sObject xsi:type="sf:Lead" '
                   f'xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>{lead}</sf:Id>'
                   f"<sf:Status>Open</sf:Status></sObject></Notification>"
                   for n, lead in zip(notes, lead_ids, strict=True))
    text = (f'<?xml version="1.0" encoding="{encoding}"?>{prolog}'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f'<soapenv:Body><notifications xmlns="{OUTBOUND_NS}"><OrganizationId>{org_id}</OrganizationId>'
            f"<ActionId>04kHp0000000001AAA</ActionId>{body}</notifications></soapenv:Body></soapenv:Envelope>")
    return text.encode(encoding)


class Statements:
    """SQL statements the store runs while the block runs (all threads: the server's too). What a
    request costs the database, counted instead of timed: per-event work would grow with the batch."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.engine = sessions.kw["bind"]
        self.seen: list[str] = []

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement.split(None, 1)[0].upper())

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)
