"""Receiver for Salesforce Workflow Outbound Messages (SOAP `notifications`).

Salesforce POSTs up to 100 notifications per message and re-sends the whole message, with back-off,
for up to 24 hours until it gets `<Ack>true</Ack>`; messages may repeat and arrive out of order.
So the receiver only checks the sender (OrganizationId, all 18 characters), hands (notification Id,
record Id) pairs to `on_ids` (the core stores them durably in one insert, de-duplicated by
notification Id) and acknowledges only after that returned: a crash before the Ack means
Salesforce sends again, never a lost id. Reading the leads happens later, off the request path.

A notification whose Id or Lead Id is not a well-formed Salesforce id is skipped and counted, and
the rest are stored and acknowledged: a fault for the whole message would only have Salesforce
re-send it, bad notification included, until it drops the valid ones beside it after 24 hours.

The body is parsed with defusedxml, which refuses any DTD, entity declaration or external
reference however the document is encoded (a byte search for "<!DOCTYPE" misses UTF-16).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from connectors.salesforce.ids import LEAD_PREFIX, ORG_PREFIX, is_record_id, to_18
from sidecar.web.counters import SKIPPED
from sidecar.web.limits import media_type

log = logging.getLogger(__name__)

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
# SOAP 1.1 is text/xml (what Salesforce sends); the other two are XML all the same.
XML_TYPES = {"text/xml", "application/xml", "application/soap+xml"}
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


def org_id_18(configured: str) -> str:
    """The configured org id in the 18-character form Outbound Messages carry. The first 15
    characters are the id (Setup > Company Information shows them); the suffix is computed from
    them, so a configured 18-character id with a mistyped suffix still names the right org.
    ValueError if it is no org id at all (settings already refuse that with a clear message)."""
    id15 = configured.strip()[:15]
    if not is_record_id(id15, ORG_PREFIX) or len(configured.strip()) not in (15, 18):
        raise ValueError(f"SIDECAR_SF_ORGANIZATION_ID {configured!r} is not an organization id: 15 or 18 "
                         "letters and digits starting 00D (Setup > Company Information > Salesforce.com "
                         "Organization ID)")
    return to_18(id15)


def same_org(given: str, expected_18: str) -> bool:
    """All 18 characters, case-sensitive: a sender matching only the first 15 is another org (or a
    forgery), since the suffix is derived from them and Salesforce always sends the 18-character id."""
    return len(given) == 18 and given == expected_18


@dataclass
class Parsed:
    pairs: list[tuple[str, str]]
    skipped: Counter[str] = field(default_factory=Counter)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _xml(body: bytes) -> ET.Element:
    try:
        return fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise OutboundRefused(400, "DTDs and entities are not accepted") from exc
    except (ET.ParseError, ValueError, LookupError) as exc:  # ValueError: expat on e.g. encoding="UTF-16-LE"
        raise OutboundRefused(400, f"malformed XML: {exc}") from exc


def parse_notifications(body: bytes, organization_id: str) -> Parsed:
    """(notification Id, Lead Id) pairs and what was skipped (no pairs: nothing usable); raises
    OutboundRefused(400|403) when the message is malformed, carries a DTD, or comes from another
    org. `organization_id`: the 18-character form."""
    repaired = False
    try:
        root = _xml(body)
    except OutboundRefused:
        # Bytes that are not UTF-8 in some field value (a record edited through a misconfigured
        # integration) make the whole message malformed XML, and a fault makes Salesforce re-send
        # it, valid notifications included, for 24 hours. Only the ids are read from the message
        # (always ASCII; the record itself is read through the API), so the stray bytes are replaced.
        text = body.decode("utf-8", errors="replace")
        if "\ufffd" not in text:
            raise
        root = _xml(text.encode("utf-8"))  # still malformed: the first error stands
        repaired = True
    notifications = root.find(f".//{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise OutboundRefused(400, "no notifications element")
    org = (notifications.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") or "").strip()
    if not same_org(org, organization_id):
        raise OutboundRefused(403, "OrganizationId does not match this sidecar's org")
    parsed = Parsed([])
    if repaired:
        parsed.skipped["non_utf8_bytes_replaced"] += 1
    for note in notifications.findall(f"{{{OUTBOUND_NS}}}Notification"):
        note_id = (note.findtext(f"{{{OUTBOUND_NS}}}Id") or "").strip()
        sobject = note.find(f"{{{OUTBOUND_NS}}}sObject")
        ids = [(child.text or "").strip() for child in sobject if _local(child.tag) == "Id"] \
            if sobject is not None else []
        record_id = ids[0] if ids else ""
        if not is_record_id(note_id):
            parsed.skipped["bad_notification_id"] += 1
        elif not is_record_id(record_id, LEAD_PREFIX):
            parsed.skipped["bad_record_id"] += 1  # missing, another object's id, or no id at all
        else:
            parsed.pairs.append((note_id, record_id))
    return parsed


def _parse_and_store(body: bytes, organization_id: str,
                     on_ids: Callable[[list[tuple[str, str]]], None]) -> Parsed | OutboundRefused:
    """The parsed message after its pairs were stored, or why it is refused (then nothing is stored).
    The store is called outside the parse's `try`: an error of ours must be a 500 (no Ack, Salesforce
    delivers again), never a fault blaming the message."""
    try:
        parsed = parse_notifications(body, organization_id)
    except OutboundRefused as refused:
        return refused
    if parsed.pairs:
        on_ids(parsed.pairs)
    return parsed


def salesforce_outbound_router(organization_id: str, on_ids: Callable[[list[tuple[str, str]]], None],
                               skipped: Counter[str] = SKIPPED) -> APIRouter:
    """`POST /webhooks/salesforce`. `on_ids` must store the pairs durably before returning."""
    router = APIRouter()
    expected_org = org_id_18(organization_id)

    @router.post("/webhooks/salesforce")
    async def receive(request: Request) -> Response:
        if media_type(request.headers.get("content-type")) not in XML_TYPES:
            return _fault(415, "expected a SOAP message (Content-Type: text/xml)")
        body = await request.body()
        # One trip to a worker thread for parsing and storing: a large message must not hold up the
        # event loop, and the store is synchronous. An exception in the store means no Ack:
        # Salesforce delivers the message again later.
        parsed = await run_in_threadpool(_parse_and_store, body, expected_org, on_ids)
        if isinstance(parsed, OutboundRefused):
            return _fault(parsed.status, str(parsed))
        if parsed.skipped:
            skipped.update({f"salesforce.{k}": n for k, n in parsed.skipped.items()})
            log.warning("Outbound Message: skipped %s", ", ".join(f"{n} {k}" for k, n in parsed.skipped.items()))
        if not parsed.pairs:
            return _fault(400, "no notification carries a well-formed Id and Lead Id")
        return Response(ACK, media_type="text/xml")

    return router
