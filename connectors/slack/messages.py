"""Block Kit messages for SLA notifications: pure functions of a `Notification` (no I/O, no clock).

Every time shown is derived from the notification itself (`at`, `due_at`, `tz`), so an outbox row
renders the same message on every retry, in the demo and in tests.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from string import Formatter
from typing import Any
from zoneinfo import ZoneInfo

from sidecar.domain import Crm
from sidecar.ports import Notification

# Slack's documented limits; exceeding any of them fails the whole post with invalid_blocks.
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
MAX_BLOCKS = 50
BUTTON_TEXT_LIMIT = 75
URL_LIMIT = 3000
CONFIRM_TEXT_LIMIT = 300  # a button's confirmation dialog text
LINK_LABEL_LIMIT = 200  # a lead's label inside a digest line's link: the line is clipped after it
TEXT_LIMIT = 4000  # top-level text feeds notifications and screen readers: long is useless there

OPEN_RECORD_ACTION = "open_record"  # the link button; Slack still posts a click event for it
ACK_ACTION, SNOOZE_ACTION, REVERT_ACTION = "ack", "snooze_15", "revert_reassignment"

# Keys are "<rule id or kind>.header" / ".intro" (a rule's own template wins over its kind's);
# "default.*" serves every other kind. Headers are plain
# text; intros are mrkdwn (values are escaped, the admin's own markup is kept). Fields: name, company,
# market, source, intent, state, owner (the lead's), recipient (who reads it), elapsed (business time
# waited), remaining ("SLA breach in 12 minutes" / "overdue by 35 minutes"), due (local clock time),
# rule_id, version, kind, crm, new_owner, from_owner, reason.
DEFAULT_TEMPLATES: dict[str, str] = {
    "sla_breach_imminent.header": ":warning: {remaining}: {name} ({company})",
    "sla_breach_imminent.intro": "{recipient}, this lead has waited *{elapsed}* of business time. "
                                 "Contact it before {due} to stay inside the SLA.",
    "sla_breach.header": ":rotating_light: SLA breached: {name} ({company})",
    "sla_breach.intro": "{name} has waited *{elapsed}* of business time and is *{remaining}*. "
                        "Owner: {owner}.",
    "sla_breach_auto_reassign.header": ":arrows_counterclockwise: Reassigned to {new_owner}: "
                                       "{name} ({company})",
    "sla_breach_auto_reassign.intro": "{name} moved from {from_owner} to *{new_owner}* after {elapsed} "
                                      "of business time ({remaining}). Reason: {reason}.",
    "stuck_lead.header": ":hourglass_flowing_sand: Stuck in {state}: {name} ({company})",
    "stuck_lead.intro": "{name} has been in {state} for *{elapsed}* of business time. {reason}",
    "compliance_hold.header": ":no_entry: Compliance hold: {name} ({company})",
    "compliance_hold.intro": "{reason}",
    "compliance_cleared.header": ":white_check_mark: Compliance cleared: {name} ({company})",
    "compliance_cleared.intro": "{reason}",
    "compliance_review_aging.header": ":hourglass: Still waiting for compliance: {name} ({company})",
    "compliance_review_aging.intro": "{reason}",
    "high_value_flag.header": ":gem: High-value lead: {name} ({company})",
    "high_value_flag.intro": "Priority: *high*. {reason}. Owner: {owner}.",
    "churn_risk.header": ":rotating_light: Churn risk: {name} ({company})",
    "churn_risk.intro": "{reason}. Account owner: {owner}; the retention touchpoint is due {due}.",
    "churn_outreach_paused.header": ":pause_button: Outreach paused: {name} ({company})",
    "churn_outreach_paused.intro": "{reason}.",
    "default.header": "SLA update: {name} ({company})",
    "default.intro": "{name} is in {state} ({remaining}). Owner: {owner}.",
}
TEMPLATE_FIELDS = frozenset({"name", "company", "market", "source", "intent", "state", "owner", "recipient",
                             "elapsed",
                             "remaining", "due", "rule_id", "version", "kind", "crm", "new_owner",
                             "from_owner", "reason"})
_CRM_LABEL = {Crm.SALESFORCE: "Salesforce", Crm.HUBSPOT: "HubSpot"}
_MISSING = "—"


@dataclass(frozen=True)
class SlackMessage:
    text: str  # plain-text fallback: notifications, screen readers, clients without Block Kit
    blocks: list[dict[str, Any]]


def template_problems(templates: Mapping[str, str]) -> list[str]:
    """Every problem in admin-supplied templates at once (checked at startup, not at send time)."""
    problems: list[str] = []
    for key, template in templates.items():
        kind, _, part = key.rpartition(".")
        if not kind or part not in ("header", "intro"):
            problems.append(f"template key {key!r}: expected '<kind>.header' or '<kind>.intro'")
        try:
            names = [field for _, field, _, _ in Formatter().parse(template) if field is not None]
        except ValueError as err:
            problems.append(f"template {key!r}: {err} (write literal braces as '{{{{' and '}}}}')")
            continue
        for name in names:
            # Rejecting "{name.attr}" / "{name[0]}" keeps templates from reaching into Python objects.
            if name not in TEMPLATE_FIELDS:
                known = ", ".join(sorted(TEMPLATE_FIELDS))
                problems.append(f"template {key!r}: unknown field {{{name}}}; known fields: {known}")
    return problems


def humanize(seconds: float) -> str:
    """'less than a minute', '1 minute', '12 minutes', '1 h 5 min', '2 d 3 h' (rounded half up)."""
    minutes = math.floor(abs(seconds) / 60 + 0.5)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    hours, mins = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def deadline_phrase(at: datetime, due_at: datetime) -> str:
    """How the deadline looks from the decision instant, phrased for people."""
    delta = (due_at - at).total_seconds()
    if abs(delta) < 30:
        return "SLA breach now"
    return f"SLA breach in {humanize(delta)}" if delta > 0 else f"overdue by {humanize(delta)}"


def local_time(moment: datetime, tz: str, reference: datetime) -> str:
    """'08:00 IST' on the reference's local day, else 'Mon 02 Mar 08:00 IST' (in the team's zone)."""
    if moment.tzinfo is None or reference.tzinfo is None:
        raise ValueError("aware datetimes only: a naive time would be read as the server's zone")
    zone = ZoneInfo(tz)
    local = moment.astimezone(zone)
    same_day = local.date() == reference.astimezone(zone).date()
    return local.strftime("%H:%M %Z" if same_day else "%a %d %b %H:%M %Z")


def escape(text: str) -> str:
    # Slack's three control characters; also stops a lead named "<!channel>" from pinging everyone.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int, *, escaped: bool = True) -> str:
    """Cut to `limit` characters with an ellipsis; in escaped text never split an &amp;-style entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (re.sub(r"&[a-z]{0,3}$", "", cut) if escaped else cut) + "…"


def button_value(notification: Notification, idempotency_key: str) -> str:
    lead = notification.lead
    return json.dumps({"crm": str(lead.crm), "crm_id": lead.crm_id, "key": idempotency_key},
                      separators=(",", ":"))


def template_fields(notification: Notification) -> dict[str, str]:
    n, lead, extra = notification, notification.lead, notification.extra
    return {
        "name": lead.name or _MISSING, "company": lead.company or _MISSING,
        "market": lead.market or _MISSING, "source": lead.source or _MISSING,
        "intent": lead.intent or _MISSING, "state": lead.state,
        "owner": lead.owner_name or _MISSING, "recipient": n.recipient_name or lead.owner_name or "Hi",
        "elapsed": humanize(n.elapsed_business_s), "remaining": deadline_phrase(n.at, n.due_at),
        "due": local_time(n.due_at, n.tz, n.at), "rule_id": n.rule_id, "version": n.policy_version,
        "kind": n.kind, "crm": _CRM_LABEL.get(lead.crm, str(lead.crm)),
        "new_owner": str(extra.get("new_owner_name") or _MISSING),
        "from_owner": str(extra.get("from_owner_name") or lead.owner_name or _MISSING),
        "reason": str(extra.get("reason") or "SLA breached without contact"),
    }


def _render(notification: Notification, part: str, templates: Mapping[str, str],
            fields: dict[str, str]) -> str:
    merged = {**DEFAULT_TEMPLATES, **templates}
    # Most specific first: the rule that fired (e.g. "sla.imminent.header"), its kind, the default.
    template = (merged.get(f"{notification.rule_id}.{part}") or merged.get(f"{notification.kind}.{part}")
                or merged[f"default.{part}"])
    return template.format_map(fields)


def _text(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": text} | ({"emoji": True} if kind == "plain_text" else {})


def _button(text: str, action_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id,
            "text": _text(clip(text, BUTTON_TEXT_LIMIT, escaped=False), "plain_text"), **extra}


def _fields(notification: Notification, values: dict[str, str]) -> list[dict[str, Any]]:
    n, since = notification, notification.extra.get("state_since")
    state = values["state"]
    if since:
        try:
            moment = since if isinstance(since, datetime) else datetime.fromisoformat(str(since))
            shown = local_time(moment, n.tz, n.at)
        except ValueError:  # an unreadable hint is shown as given rather than failing the message
            shown = str(since)
        state = f"{state} since {shown}"
    # The typed flag, not the admin's kind label: any decision that gave the lead away names its new owner.
    owner = values["new_owner"] if n.reassignment else values["owner"]
    pairs = [("Lead", values["name"]), ("Company", values["company"]), ("Market", values["market"]),
             ("Source", values["source"]), ("Intent", values["intent"]), ("State", state),
             ("Owner", owner), ("Waiting", f"{values['elapsed']} (business time)"),
             ("Deadline", f"{values['due']} · {values['remaining']}")]
    return [_text(clip(f"*{label}*\n{escape(value)}", FIELD_LIMIT)) for label, value in pairs[:MAX_FIELDS]]


def _actions(notification: Notification, idempotency_key: str) -> dict[str, Any]:
    n, value = notification, button_value(notification, idempotency_key)
    elements: list[dict[str, Any]] = []
    if len(n.lead.record_url) <= URL_LIMIT:  # a longer URL would reject the whole message
        label = f"Open in {_CRM_LABEL.get(n.lead.crm, str(n.lead.crm))}"
        elements.append(_button(label, OPEN_RECORD_ACTION, url=n.lead.record_url))
    elements.append(_button("I'm on it", ACK_ACTION, value=value, style="primary"))
    if n.extra.get("snooze_allowed"):
        elements.append(_button("Snooze 15 min", SNOOZE_ACTION, value=value))
    if n.reassignment and n.via != "slack_dm":  # only the team lead's view may undo it
        confirm = {"title": _text("Revert reassignment?", "plain_text"),
                   "text": _text(_confirm_text(n.lead.name)),
                   "confirm": _text("Revert", "plain_text"), "deny": _text("Keep", "plain_text")}
        elements.append(_button("Revert reassignment", REVERT_ACTION, value=value, style="danger",
                                confirm=confirm))
    return {"type": "actions", "block_id": "sidecar_actions", "elements": elements}


def _confirm_text(name: str) -> str:
    # Clip the name, not the question: a long lead name must not fail the whole message.
    frame = "Give {} back to its previous owner?"
    return frame.format(clip(escape(name), CONFIRM_TEXT_LIMIT - len(frame) + 2))


def build_message(notification: Notification, idempotency_key: str,
                  templates: Mapping[str, str] | None = None, *,
                  fallback_note: str | None = None) -> SlackMessage:
    """Header by kind, optional fallback note, intro, lead facts, buttons, rule/policy context."""
    templates = templates or {}
    raw = template_fields(notification)
    escaped = {key: escape(value) for key, value in raw.items()}
    # Headers are plain_text (no escaping) and must be one line; intros are mrkdwn.
    header = clip(" ".join(_render(notification, "header", templates, raw).split()), HEADER_LIMIT,
                  escaped=False)
    intro = clip(_render(notification, "intro", templates, escaped), SECTION_LIMIT)
    context = f"Rule `{escaped['rule_id']}` · policy `{escaped['version']}` · {escaped['kind']}"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _text(header, "plain_text")}]
    if fallback_note:
        blocks.append({"type": "section", "text": _text(clip(fallback_note, SECTION_LIMIT))})
    blocks += [
        {"type": "section", "text": _text(intro)},
        {"type": "section", "fields": _fields(notification, raw)},
        _actions(notification, idempotency_key),
        {"type": "context", "elements": [_text(clip(context, FIELD_LIMIT))]},
    ]
    crm = escaped["crm"]
    summary = (f"{escape(header)} — {escaped['state']}, owner {escaped['owner']}, waited {escaped['elapsed']}"
               f" of business time, due {escaped['due']}.")
    if fallback_note:
        summary = f"{fallback_note}\n{summary}"
    link = f" <{notification.lead.record_url}|Open in {crm}>"
    # Clip the prose, not the link: a cut "<url|…" would render as garbage.
    if len(link) > TEXT_LIMIT // 2:
        link = ""
    text = clip(summary, TEXT_LIMIT - len(link)) + link
    return SlackMessage(text=text, blocks=blocks[:MAX_BLOCKS])


def build_digest(notifications: Sequence[Notification], fallback_note: str | None = None) -> SlackMessage:
    """Several warnings for one recipient in one message: a line per lead, each with its link."""
    first = notifications[0]
    count = len(notifications)
    header = f":warning: {count} leads need you before their SLA runs out"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _text(clip(header, HEADER_LIMIT, escaped=False),
                                                                      "plain_text")}]
    if fallback_note:
        blocks.append({"type": "section", "text": _text(clip(fallback_note, SECTION_LIMIT))})
    lines = []
    # Room for the header, the note and the context block; the rest are counted, not listed.
    shown = notifications[: MAX_BLOCKS - 4]
    for n in shown:
        values = {key: escape(value) for key, value in template_fields(n).items()}
        # The label is clipped on its own so that clipping the line can never cut the link open.
        label = clip(f"{values['name']} ({values['company']})", LINK_LABEL_LIMIT)
        # At most half a section, so the clip below only ever shortens the facts after the link.
        link = f"<{n.lead.record_url}|{label}>" if len(n.lead.record_url) <= SECTION_LIMIT // 2 else label
        line = (f"*{link}* · {values['market']} · {values['source']} · {values['state']} · waited "
                f"{values['elapsed']} · {values['remaining']} (due {values['due']})")
        lines.append(line)
        blocks.append({"type": "section", "text": _text(clip(line, SECTION_LIMIT))})
    if count > len(shown):
        blocks.append({"type": "section", "text": _text(f"…and {count - len(shown)} more")})
    rules = sorted({f"`{escape(n.rule_id)}`" for n in notifications})
    blocks.append({"type": "context", "elements": [_text(clip(
        f"Digest of {count} warnings · rules {', '.join(rules)} · policy `{escape(first.policy_version)}`",
        FIELD_LIMIT))]})
    text = "\n".join([header, *([fallback_note] if fallback_note else []), *lines])
    return SlackMessage(text=clip(text, TEXT_LIMIT), blocks=blocks[:MAX_BLOCKS])
