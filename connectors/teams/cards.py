"""Adaptive Cards for SLA notifications, posted through Teams Workflows webhooks (pure, no I/O).

The same content as the Slack messages (connectors.slack.messages: the same fields, templates and
times, all derived from the `Notification`, so a retry renders the same card). What Teams takes,
as checked for this module (README, "Microsoft Teams", lists the sources):
- The webhook body is `{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <AdaptiveCard>}]}`;
  the workflow's "Post card in a chat or channel" action posts `attachments[0].content`.
  Workflows accept Adaptive Cards only (no MessageCard, no plain text).
- Teams renders Adaptive Cards up to schema 1.5 (Copilot Studio docs: "Teams is also limited to
  version 1.5"); the cards say 1.4 so that older mobile clients render them too. Everything used
  here (TextBlock, FactSet, Action.OpenUrl) is 1.0.
- A posted message is limited to about 28 KB ("Request Entity too large" above it: Teams
  connector "Known issues and limitations", Incoming Webhook docs). Teams documents no per-text
  limits, so the card keeps Slack's (header 150, intro 3000, a fact 2000) and then shrinks until
  the whole payload fits `PAYLOAD_BUDGET`: a card is clipped, never refused.
- Workflow posts cannot call back (no Action.Submit/Execute without a bot), so the card only links:
  to the CRM record, and for managers to the dashboard's lead page, where revert lives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.slack.messages import (
    DEFAULT_TEMPLATES,
    clip,
    local_time,
    template_fields,
)
from sidecar.domain import Crm, Persona
from sidecar.ports import Notification

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"
SCHEMA_URL = "http://adaptivecards.io/schemas/adaptive-card.json"
PAYLOAD_LIMIT = 28 * 1024  # bytes of the whole request body Teams posts
PAYLOAD_BUDGET = 27 * 1024  # what we aim for: the limit is "about" 28 KB, keep a margin
HEADER_LIMIT, INTRO_LIMIT, FACT_LIMIT, NOTE_LIMIT = 150, 3000, 2000, 1000
DIGEST_LINE_LIMIT = 400
_CRM_LABEL = {Crm.SALESFORCE: "Salesforce", Crm.HUBSPOT: "HubSpot"}
# Personas who may revert a reassignment: their cards link to the dashboard's lead page as well.
DASHBOARD_PERSONAS = frozenset({Persona.MANAGER, Persona.REGIONAL_VP, Persona.OPS_REVIEW})
# Slack's emoji short codes in the shared templates, as the characters Teams shows.
_EMOJI = {"warning": "⚠️", "rotating_light": "🚨", "arrows_counterclockwise": "🔄",
          "hourglass_flowing_sand": "⏳", "hourglass": "⌛", "no_entry": "⛔", "white_check_mark": "✅",
          "gem": "💎", "pause_button": "⏸️", "information_source": "ℹ️"}
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")
_SLACK_BOLD = re.compile(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])")


def teams_text(slack_text: str) -> str:
    """A shared template's output in Teams' markdown: emoji characters, **bold**, no Slack entities."""
    text = _SHORTCODE.sub(lambda m: _EMOJI.get(m.group(1), ""), slack_text)
    return _SLACK_BOLD.sub(r"**\1**", text).strip()


def _render(n: Notification, part: str, templates: Mapping[str, str], fields: dict[str, str]) -> str:
    merged = {**DEFAULT_TEMPLATES, **templates}
    template = (merged.get(f"{n.rule_id}.{part}") or merged.get(f"{n.kind}.{part}") or merged[f"default.{part}"])
    return teams_text(template.format_map(fields))


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _facts(n: Notification, values: dict[str, str], limit: int) -> dict[str, Any]:
    since, state = n.extra.get("state_since"), values["state"]
    if since:
        try:
            state = f"{state} since {local_time(datetime.fromisoformat(str(since)), n.tz, n.at)}"
        except ValueError:  # an unreadable hint is shown as given rather than failing the card
            state = f"{state} since {since}"
    # Typed, like the Revert button: a reassignment under any kind label shows its new owner and why.
    owner = values["new_owner"] if n.reassignment else values["owner"]
    pairs = [("Lead", values["name"]), ("Company", values["company"]), ("Market", values["market"]),
             ("Source", values["source"]), ("Intent", values["intent"]), ("State", state), ("Owner", owner),
             ("Waiting", f"{values['elapsed']} (business time)"),
             ("Deadline", f"{values['due']} · {values['remaining']}")]
    if n.reassignment or n.extra.get("reason"):
        pairs.append(("Reason", values["reason"]))
    return {"type": "FactSet", "facts": [{"title": title, "value": clip(value, limit, escaped=False)}
                                         for title, value in pairs]}


def _actions(n: Notification, dashboard_base: str | None) -> list[dict[str, Any]]:
    crm = _CRM_LABEL.get(n.lead.crm, str(n.lead.crm))
    actions = [{"type": "Action.OpenUrl", "title": f"Open in {crm}", "url": n.lead.record_url}]
    if dashboard_base and (n.persona in DASHBOARD_PERSONAS or (n.reassignment and n.via == "teams_channel")):
        title = "Review or revert in the dashboard" if n.reassignment else "Open in the dashboard"
        actions.append({"type": "Action.OpenUrl", "title": title,
                        "url": f"{dashboard_base.rstrip('/')}/dashboard/leads/{n.lead.crm.value}/{n.lead.crm_id}"})
    return actions


def card(n: Notification, templates: Mapping[str, str] | None = None, *, dashboard_base: str | None = None,
         note: str | None = None, scale: float = 1.0) -> dict[str, Any]:
    """The Adaptive Card for one notification; `scale` < 1 shrinks every text limit (see `payload`)."""
    templates, values = templates or {}, template_fields(n)
    header = clip(" ".join(_render(n, "header", templates, values).split()), HEADER_LIMIT, escaped=False)
    intro = clip(_render(n, "intro", templates, values), max(80, int(INTRO_LIMIT * scale)), escaped=False)
    body: list[dict[str, Any]] = [_text(header, weight="Bolder", size="Medium", style="heading")]
    if note:
        body.append(_text(clip(note, max(80, int(NOTE_LIMIT * scale)), escaped=False), isSubtle=True))
    body += [_text(intro), _facts(n, values, max(40, int(FACT_LIMIT * scale))),
             _text(clip(f"Rule {values['rule_id']} · policy {values['version']} · {values['kind']}", 300,
                        escaped=False), isSubtle=True, size="Small")]
    return _adaptive(body, _actions(n, dashboard_base), fallback=header)


def digest_card(notifications: Sequence[Notification], *, note: str | None = None,
                limit_lines: int | None = None) -> dict[str, Any]:
    """Several warnings for one recipient: a line per lead, each with its record link."""
    count = len(notifications)
    header = f"⚠️ {count} leads need you before their SLA runs out"
    body: list[dict[str, Any]] = [_text(header, weight="Bolder", size="Medium", style="heading")]
    if note:
        body.append(_text(clip(note, NOTE_LIMIT, escaped=False), isSubtle=True))
    shown = notifications[:limit_lines] if limit_lines is not None else notifications
    for n in shown:
        values = template_fields(n)
        label = _link_label(clip(f"{values['name']} ({values['company']})", 200, escaped=False))
        # The prose is clipped on its own so that clipping can never cut the link open.
        prose = clip(f"{values['remaining']} (due {values['due']}), {values['state']}", DIGEST_LINE_LIMIT,
                     escaped=False)
        body.append(_text(f"[{label}]({n.lead.record_url}) — {prose}"))
    if len(shown) < count:
        body.append(_text(f"…and {count - len(shown)} more: see the dashboard", isSubtle=True))
    return _adaptive(body, [], fallback=header)


def _link_label(text: str) -> str:
    # Brackets in a name would end the markdown link early: show them as parentheses.
    return text.replace("[", "(").replace("]", ")")


def _adaptive(body: list[dict[str, Any]], actions: list[dict[str, Any]], *, fallback: str) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "AdaptiveCard", "$schema": SCHEMA_URL, "version": CARD_VERSION,
                               "fallbackText": fallback, "msteams": {"width": "Full"}, "body": body}
    if actions:
        content["actions"] = actions
    return content


def envelope(content: dict[str, Any], *, key: str, recipient: str | None) -> dict[str, Any]:
    """The webhook body. `recipient` (an e-mail) is what the chat workflow's "Recipient" field reads;
    `idempotencyKey` lets a retry after a timeout be recognised (the workflow ignores both otherwise)."""
    out: dict[str, Any] = {"type": "message",
                           "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}],
                           "idempotencyKey": key}
    if recipient:
        out["recipient"] = recipient
    return out


def size(body: dict[str, Any]) -> int:
    """Bytes on the wire, as the notifier sends it (compact UTF-8 JSON)."""
    return len(encode(body))


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def payload(n: Notification, key: str, templates: Mapping[str, str] | None = None, *,
            dashboard_base: str | None = None, note: str | None = None,
            budget: int = PAYLOAD_BUDGET) -> dict[str, Any]:
    """The body to POST for one notification, shrunk until it fits `budget` bytes (never refused)."""
    recipient = n.recipient_email if n.via == "teams_chat" else None
    scale = 1.0
    while True:
        body = envelope(card(n, templates, dashboard_base=dashboard_base, note=note, scale=scale),
                        key=key, recipient=recipient)
        if size(body) <= budget or scale < 0.02:
            break
        scale /= 2
    if size(body) > budget:  # only a monstrous record URL is left: the header and the facts' gist
        values = template_fields(n)
        body = envelope(_adaptive([_text(clip(f"{values['name']} ({values['company']}): {values['remaining']}",
                                              HEADER_LIMIT, escaped=False), weight="Bolder")], [],
                                  fallback=values["name"]), key=key, recipient=recipient)
    return body


def digest_payload(notifications: Sequence[Notification], key: str, *, note: str | None = None,
                   budget: int = PAYLOAD_BUDGET) -> dict[str, Any]:
    first = notifications[0]
    recipient = first.recipient_email if first.via == "teams_chat" else None
    lines = len(notifications)
    body = envelope(digest_card(notifications, note=note), key=key, recipient=recipient)
    while size(body) > budget and lines > 1:
        lines = max(1, lines * 3 // 4)  # fewer lines; the rest are counted, not listed
        body = envelope(digest_card(notifications, note=note, limit_lines=lines), key=key, recipient=recipient)
    if size(body) > budget:
        body = envelope(digest_card(notifications, limit_lines=0), key=key, recipient=recipient)
    return body
