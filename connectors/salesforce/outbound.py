"""Receiver for Salesforce Workflow Outbound Messages (SOAP `notifications`).

Salesforce POSTs up to 100 notifications per message and re-sends the whole message, with back-off,
for up to 24 hours until it gets `<Ack>true</Ack>`; messages may repeat and arrive out of order.
So the receiver only checks the sender (OrganizationId), hands (notification Id, record Id) pairs
to `on_ids` (the core stores them durably, de-duplicated by notification Id) and acknowledges
only after that returned: a crash before the Ack means Salesforce sends again, never a lost id.

The body is parsed with the standard library after refusing any DOCTYPE: outbound messages never
carry one, and refusing it rules out entity-expansion and external-entity attacks.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_BODY_BYTES = 2_000_000  # 100 notifications with a few fields each are far below this
_ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="' + SOAP_NS + '">'
             "<soapenv:Body>{}</soapenv:Body></soapenv:Envelope>")
ACK = _ENVELOPE.format(f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack>'
                       "</notificationsResponse>")


class OutboundRefused(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _fault(status: int, reason: str) -> Response:
    code = "soapenv:Client"
    body = _ENVELOPE.format(f"<soapenv:Fault><faultcode>{code}</faultcode>"
                            f"<faultstring>{_escape(reason)}</faultstring></soapenv:Fault>")
    return Response(body, status_code=status, media_type="text/xml")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def same_org(a: str, b: str) -> bool:
    """Org ids compare on their 15-character case-sensitive form (the 18-char suffix is a checksum)."""
    return len(a) in (15, 18) and len(b) in (15, 18) and a[:15] == b[:15]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_notifications(body: bytes, organization_id: str) -> list[tuple[str, str]]:
    """(notification Id, sObject Id) pairs; OutboundRefused(400|403) when malformed or foreign."""
    if len(body) > MAX_BODY_BYTES:
        raise OutboundRefused(400, "message too large")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise OutboundRefused(400, "DTDs and entities are not accepted")
    try:
        root = ET.fromstring(body)  # noqa: S314 - DOCTYPE/ENTITY refused above, nothing to expand
    except ET.ParseError as exc:
        raise OutboundRefused(400, f"malformed XML: {exc}") from exc
    notifications = root.find(f".//{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise OutboundRefused(400, "no notifications element")
    org = (notifications.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") or "").strip()
    if not same_org(org, organization_id):
        raise OutboundRefused(403, "OrganizationId does not match this sidecar's org")
    pairs: list[tuple[str, str]] = []
    for note in notifications.findall(f"{{{OUTBOUND_NS}}}Notification"):
        note_id = (note.findtext(f"{{{OUTBOUND_NS}}}Id") or "").strip()
        sobject = note.find(f"{{{OUTBOUND_NS}}}sObject")
        record_id = ""
        if sobject is not None:
            ids = [(child.text or "").strip() for child in sobject if _local(child.tag) == "Id"]
            record_id = ids[0] if ids else ""
        if not note_id or not record_id:
            raise OutboundRefused(400, "a notification lacks its Id or its sObject Id")
        pairs.append((note_id, record_id))
    if not pairs:
        raise OutboundRefused(400, "no Notification elements")
    return pairs


def salesforce_outbound_router(organization_id: str,
                               on_ids: Callable[[list[tuple[str, str]]], None]) -> APIRouter:
    """`POST /webhooks/salesforce`. `on_ids` must store the pairs durably before returning."""
    router = APIRouter()

    @router.post("/webhooks/salesforce")
    async def receive(request: Request) -> Response:
        try:
            pairs = parse_notifications(await request.body(), organization_id)
        except OutboundRefused as exc:
            return _fault(exc.status, str(exc))
        # An exception here means no Ack: Salesforce delivers the message again later.
        await run_in_threadpool(on_ids, pairs)
        return Response(ACK, media_type="text/xml")

    return router
