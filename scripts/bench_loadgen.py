"""Load generator for the webhook benchmarks: a separate process that sends signed HubSpot webhook
batches or Salesforce Outbound Messages to `sidecar run` over loopback HTTP/1.1 keep-alive
connections and reports each request's status and latency.

    python scripts/bench_loadgen.py SPEC.json  ->  JSON on stdout

SPEC: {"kind": "hubspot"|"salesforce", "url": "http://127.0.0.1:PORT", "requests": N, "concurrency": C,
"per_request": events per request, "ids": [lead ids to cycle through], "secret": HubSpot app
secret, "org_id": Salesforce org id, "rate": requests per second (0: as fast as it can), "seed": int}.
Requests are built (and signed) before the clock starts, so the generator's own cost per request is
one socket write and one read. Plain asyncio streams: nothing to install, little CPU of its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

SOAP = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications '
        'xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{org}</OrganizationId><ActionId>'
        '04k000000000001AAA</ActionId><SessionId xsi:nil="true"/><EnterpriseUrl>https://example.my.salesforce.com'
        '/services/Soap/c/59.0/{org}</EnterpriseUrl><PartnerUrl>https://example.my.salesforce.com/services/Soap/u/'
        '59.0/{org}</PartnerUrl>{notes}</notifications></soapenv:Body></soapenv:Envelope>')
NOTE = ('<Notification><Id>{nid}</Id><sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        '<sf:Id>{lead}</sf:Id></sObject></Notification>')
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def to_18(record_id: str) -> str:
    """Salesforce's checksum suffix (the receiver checks it)."""
    suffix = ""
    for block in range(3):
        bits = sum(1 << i for i, c in enumerate(record_id[block * 5:block * 5 + 5]) if "A" <= c <= "Z")
        suffix += _SUFFIX[bits]
    return record_id + suffix


def hubspot_request(spec: dict[str, Any], index: int, host: str, path: str) -> tuple[bytes, list[str]]:
    ids = spec["ids"]
    events = []
    for j in range(spec["per_request"]):
        n = index * spec["per_request"] + j
        events.append({"eventId": spec["seed"] * 10_000_000 + n, "subscriptionId": 4242, "portalId": 62515,
                       "appId": 1, "occurredAt": 1_764_000_000_000 + n, "subscriptionType": "contact.creation",
                       "attemptNumber": 0, "objectId": int(ids[n % len(ids)]), "changeFlag": "NEW",
                       "changeSource": "CRM"})
    body = json.dumps(events).encode()
    timestamp = str(int(time.time() * 1000))
    uri = f"{spec['url']}{path}"
    message = b"POST" + uri.encode() + body + timestamp.encode()
    signature = base64.b64encode(hmac.new(spec["secret"].encode(), message, hashlib.sha256).digest()).decode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-HubSpot-Request-Timestamp: {timestamp}\r\n"
            f"X-HubSpot-Signature-v3: {signature}\r\n\r\n")
    deliveries = [f"4242:{e['eventId']}:{e['objectId']}:{e['occurredAt']}" for e in events]
    return head.encode() + body, deliveries


def salesforce_request(spec: dict[str, Any], index: int, host: str, path: str) -> tuple[bytes, list[str]]:
    ids = spec["ids"]
    notes, deliveries = [], []
    for j in range(spec["per_request"]):
        n = index * spec["per_request"] + j
        nid = to_18(f"04l{spec['seed']:03d}{n:09d}")
        notes.append(NOTE.format(nid=nid, lead=ids[n % len(ids)]))
        deliveries.append(nid)
    body = SOAP.format(org=spec["org_id"], notes="".join(notes)).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"SOAPAction: \"\"\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body, deliveries


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:")), 0)
    if length:
        await reader.readexactly(length)
    return status


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(spec["url"])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = "/webhooks/hubspot" if spec["kind"] == "hubspot" else "/webhooks/salesforce"
    build = hubspot_request if spec["kind"] == "hubspot" else salesforce_request
    requests = [build(spec, i, f"{host}:{port}", path) for i in range(spec["requests"])]
    results: list[tuple[int, float] | None] = [None] * len(requests)
    sent_unix: list[float] = [0.0] * len(requests)  # wall clock: comparable across processes
    queue = iter(range(len(requests)))
    rate = float(spec.get("rate") or 0)
    started = time.perf_counter()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index in queue:
                if rate:  # an open-loop schedule: request i goes out at i / rate
                    delay = started + index / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                t0 = time.perf_counter()
                sent_unix[index] = time.time()
                writer.write(requests[index][0])
                status = await read_response(reader)
                results[index] = (status, time.perf_counter() - t0)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    elapsed = time.perf_counter() - started
    done = [r for r in results if r is not None]
    accepted = [d for r, (_b, ds) in zip(results, requests, strict=True) if r and 200 <= r[0] < 300 for d in ds]
    statuses: dict[str, int] = {}
    for status, _ in done:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"elapsed_s": elapsed, "statuses": statuses, "latencies_s": [lat for _s, lat in done],
            "accepted_deliveries": accepted, "sent_unix": sent_unix}


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
