"""Workflow Outbound Messages: SOAP `notifications` POSTed to a listener, retried until acked.

Salesforce batches up to 100 notifications per message, retries a message whose response is not
`<Ack>true</Ack>` with exponentially growing intervals (capped at two hours) and drops it after 24
hours. Delivery here is explicit (`deliver`), never a background thread, so tests and the demo
decide when the "network" happens; retry times come from the injected clock.
"""

from __future__ import annotations

import itertools
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import requests

from connectors.emulators.soql_lexer import to_18

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
MAX_NOTIFICATIONS = 100
FIRST_RETRY = timedelta(seconds=15)
MAX_RETRY_INTERVAL = timedelta(hours=2)
MAX_AGE = timedelta(hours=24)

Trigger = Callable[[dict[str, Any] | None, dict[str, Any]], bool]


def on_lead_change(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """The default rule: every create and every edit."""
    return True


@dataclass
class OutboundConfig:
    url: str
    org_id: str
    fields: list[str]
    trigger: Trigger
    action_id: str
    sobject: str = "Lead"


@dataclass
class OutboundMessage:
    config: OutboundConfig
    notifications: list[tuple[str, dict[str, Any]]]  # (notification id 04l..., field values)
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


@dataclass
class OutboundQueue:
    clock: Callable[[], datetime]
    instance_url: str = "https://127.0.0.1"
    api_version: str = "59.0"
    session_id: Callable[[], str | None] = lambda: None
    configs: list[OutboundConfig] = field(default_factory=list)
    pending: list[OutboundMessage] = field(default_factory=list)
    dropped: list[OutboundMessage] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Records change on server threads while a test thread delivers; the POST itself runs unlocked
    # so a listener may call back into the emulator.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _new_id(self, prefix: str) -> str:
        return to_18(f"{prefix}Hp0{next(self._ids):09d}")  # a real id: the receiver checks the suffix

    def configure(self, url: str, org_id: str, fields: list[str], trigger: Trigger | str) -> OutboundConfig:
        if isinstance(trigger, str):
            if trigger != "on lead change":
                raise ValueError(f"unknown outbound trigger {trigger!r}; pass a callable or 'on lead change'")
            trigger = on_lead_change
        # The Id always travels: a notification without it is useless to the listener.
        chosen = ["Id", *[f for f in fields if f != "Id"]]
        config = OutboundConfig(url, org_id, chosen, trigger, self._new_id("04k"))
        with self._lock:
            self.configs.append(config)
        return config

    def on_change(self, sobject: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        with self._lock:
            self._enqueue(sobject, old, new)

    def _enqueue(self, sobject: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        for config in self.configs:
            if config.sobject != sobject or not config.trigger(old, new):
                continue
            values = {name: new.get(name) for name in config.fields}
            notification = (self._new_id("04l"), values)
            # Join the newest message while it has never been attempted and has room, like the
            # real queue packs notifications raised close together into one SOAP call.
            last = next((m for m in reversed(self.pending) if m.config is config), None)
            if last is not None and last.attempts == 0 and len(last.notifications) < MAX_NOTIFICATIONS:
                last.notifications.append(notification)
            else:
                now = self.clock()
                self.pending.append(OutboundMessage(config, [notification], now, now))

    def envelope(self, message: OutboundMessage) -> bytes:
        config = message.config
        base = f"{self.instance_url}/services/Soap"
        session = self.session_id()
        nil = '<SessionId xsi:nil="true"/>'
        session_xml = f"<SessionId>{escape(session)}</SessionId>" if session else nil
        notes = []
        for note_id, values in message.notifications:
            body = "".join(f"<sf:{name}>{_render(value)}</sf:{name}>"
                           for name, value in values.items() if value is not None)
            kind = quoteattr("sf:" + config.sobject)
            notes.append(f'<Notification><Id>{note_id}</Id><sObject xsi:type={kind} xmlns:sf="{SOBJECT_NS}">'
                         f"{body}</sObject></Notification>")
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
            ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f'<soapenv:Body><notifications xmlns="{OUTBOUND_NS}">'
            f"<OrganizationId>{config.org_id}</OrganizationId><ActionId>{config.action_id}</ActionId>"
            f"{session_xml}"
            f"<EnterpriseUrl>{base}/c/{self.api_version}/{config.org_id}</EnterpriseUrl>"
            f"<PartnerUrl>{base}/u/{self.api_version}/{config.org_id}</PartnerUrl>"
            f"{''.join(notes)}</notifications></soapenv:Body></soapenv:Envelope>"
        ).encode()

    def deliver(self, session: requests.Session | None = None) -> int:
        """POST every message that is due; returns how many were acknowledged."""
        if session is None:
            session = requests.Session()
            session.trust_env = False  # a proxy from the environment must not swallow loopback calls
        now = self.clock()
        with self._lock:
            for message in [m for m in self.pending if now - m.created_at > MAX_AGE]:
                self.pending.remove(message)
                self.dropped.append(message)
            due = [m for m in self.pending if m.next_attempt_at <= now]
            for message in due:
                message.attempts += 1  # from here on no new notification joins this message
        delivered = 0
        for message in due:
            acked = self._post(session, message)
            with self._lock:
                if acked:
                    self.pending.remove(message)
                    delivered += 1
                else:
                    interval = min(FIRST_RETRY * 2 ** (message.attempts - 1), MAX_RETRY_INTERVAL)
                    message.next_attempt_at = now + interval
        return delivered

    def _post(self, session: requests.Session, message: OutboundMessage) -> bool:
        try:
            response = session.post(message.config.url, data=self.envelope(message), timeout=10,
                                    headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
        except requests.RequestException as exc:
            message.last_status, message.last_error = None, repr(exc)
            return False
        message.last_status = response.status_code
        acked = response.ok and _is_ack(response.content)
        message.last_error = None if acked else response.text[:500]
        return acked

    def describe_pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._describe()

    def _describe(self) -> list[dict[str, Any]]:
        return [
            {"url": m.config.url, "notification_ids": [n for n, _ in m.notifications],
             "record_ids": [v.get("Id") for _, v in m.notifications], "attempts": m.attempts,
             "next_attempt_at": m.next_attempt_at, "last_status": m.last_status, "last_error": m.last_error}
            for m in self.pending
        ]


def _is_ack(content: bytes) -> bool:
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return False
    return any(el.tag.rsplit("}", 1)[-1] == "Ack" and (el.text or "").strip() == "true" for el in root.iter())
