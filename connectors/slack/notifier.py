"""`Notifier` over the Slack Web API: owner DMs (found by email), team-channel posts, fallback channel.

Retries belong to the outbox (it owns the injected clock and the idempotency key), so the WebClient
is built without the SDK's retry handlers and every failure becomes TransientError / PermanentError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from http.client import HTTPException
from typing import Any, TypeVar
from zoneinfo import ZoneInfoNotFoundError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connectors.slack.messages import SlackMessage, build_digest, build_message, escape, template_problems
from sidecar.ports import Notification, PermanentError, TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")
Render = Callable[[str | None], SlackMessage]  # fallback note -> the message to post

METADATA_EVENT = "sidecar_notification"
TOKEN_ENV, FALLBACK_ENV = "SIDECAR_SLACK_BOT_TOKEN", "SIDECAR_SLACK_FALLBACK_CHANNEL"
_TRANSIENT_CODES = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})
# What an admin must do for each permanent error. Fields: channel, who, bot, needed.
_FIXES: dict[str, str] = {
    "channel_not_found": "Slack channel {channel} does not exist, or is private without the bot: check the "
                         "channel configured for {who}, or invite the bot to it: /invite @{bot}",
    "not_in_channel": "the bot is not a member of {channel}: invite the bot to {channel}: /invite @{bot}",
    "is_archived": "{channel} is archived: unarchive it or configure an active channel for {who}",
    "account_inactive": "the Slack bot token belongs to a deactivated account or uninstalled app: reinstall "
                        f"the Slack app and update {TOKEN_ENV}",
    "invalid_auth": f"Slack rejected the bot token: set {TOKEN_ENV} to the app's Bot User OAuth Token "
                    "(xoxb-…, api.slack.com/apps → OAuth & Permissions)",
    "not_authed": f"no Slack bot token was sent: set {TOKEN_ENV} to the app's Bot User OAuth Token (xoxb-…)",
    "user_disabled": "the Slack account of {who} is deactivated: update their email in the directory "
                     "or reassign their leads",
    "missing_scope": "the Slack app lacks the scope {needed}: add it under OAuth & Permissions "
                     "(chat:write, users:read, users:read.email, im:write) and reinstall the app",
}


class SlackPermanentError(PermanentError):
    """A PermanentError that remembers Slack's error code (the notifier reacts to a few)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def make_client(token: str, base_url: str | None = None, *, timeout: int = 10) -> WebClient:
    # retry_handlers=[] rather than None: None means the SDK's defaults, which retry on their own.
    return WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=timeout, retry_handlers=[])


def _header(response: Any, name: str) -> str | None:
    headers: Mapping[str, Any] = getattr(response, "headers", None) or {}
    return next((str(v) for k, v in headers.items() if k.lower() == name.lower()), None)


def map_slack_error(err: SlackApiError, *, channel: str, who: str,
                    bot: str) -> TransientError | PermanentError:
    """Slack's answer -> retry or not, with a message that says what to fix (never str(err): noisy)."""
    status = int(getattr(err.response, "status_code", 200) or 200)
    code = str(err.response.get("error") or f"http_{status}")
    if status == 429 or code == "ratelimited":
        raw = _header(err.response, "Retry-After")
        try:
            retry_after = float(raw) if raw is not None else None
        except ValueError:
            retry_after = None
        return TransientError(f"Slack rate limit (retry after {raw or '?'} s)", retry_after=retry_after)
    if status >= 500 or code in _TRANSIENT_CODES:
        return TransientError(f"Slack server error {status} ({code})")
    needed = str(err.response.get("needed") or "named in Slack's error")
    fix = _FIXES.get(code, "Slack refused the request ({code}) sending to {channel} for {who}")
    return SlackPermanentError(f"{code}: " + fix.format(channel=channel, who=who, bot=bot, needed=needed,
                                                        code=code), code)


def _channel_label(channel: str) -> str:
    # Ids (C…/G…/D…) are shown as they are; bare names get the '#' people type in Slack.
    if channel.startswith("#") or (channel[:1] in "CGD" and channel[1:].isalnum() and channel.isupper()):
        return channel
    return f"#{channel}"


class SlackNotifier:
    def __init__(self, client: WebClient, fallback_channel: str | None,
                 templates: Mapping[str, str] | None = None, *, clock: Callable[[], float] = time.monotonic,
                 hit_ttl_s: float = 3600.0, miss_ttl_s: float = 300.0, bot_name: str = "sidecar") -> None:
        problems = template_problems(templates or {})
        if problems:  # a broken template must stop startup, not dead-letter every message later
            raise ValueError("Slack message templates: " + "; ".join(problems))
        self._client, self._fallback = client, fallback_channel or None
        self._templates = dict(templates or {})
        self._clock, self._hit_ttl, self._miss_ttl, self._bot = clock, hit_ttl_s, miss_ttl_s, bot_name
        # email (lower-case) -> (Slack user id or None for "not in Slack", expiry on self._clock)
        self._users: dict[str, tuple[str | None, float]] = {}

    def send(self, notification: Notification, idempotency_key: str) -> str:
        return self._deliver(notification, idempotency_key,
                             lambda note: self._message(notification, idempotency_key, note))

    def send_digest(self, notifications: Sequence[Notification], idempotency_key: str) -> str:
        """Several warnings for one recipient as one message (the first names where it goes)."""
        def render(note: str | None) -> SlackMessage:
            try:
                return build_digest(notifications, note)
            except (ZoneInfoNotFoundError, ValueError) as err:
                raise PermanentError(f"cannot render a digest of {len(notifications)} warnings: {err}") from err
        return self._deliver(notifications[0], idempotency_key, render)

    def _deliver(self, notification: Notification, idempotency_key: str, render: Render) -> str:
        if notification.via == "slack_dm":
            return self._send_dm(notification, idempotency_key, render, allow_refresh=True)
        if not notification.channel:
            team = notification.extra.get("team")
            raise PermanentError(
                f"no Slack channel for persona {notification.persona}" + (f" of team {team}" if team else "")
                + f" ({notification.kind}, lead {notification.lead.crm_id}): set the team's Slack channel "
                "in the directory config or the persona's channel in the policy's notification routing")
        message = render(None)
        who = str(notification.persona)
        channel, ts = self._post(notification.channel, message, idempotency_key, who=who)
        return f"{channel}:{ts}"

    # ---- DMs ----
    def _send_dm(self, n: Notification, key: str, render: Render, *, allow_refresh: bool) -> str:
        email = (n.recipient_email or "").strip()
        who = self._who(n)
        if not email:
            return self._send_fallback(n, key, render, f"no email is on record for {who}")
        user_id, cached = self._lookup(email, who)
        if user_id is None:
            return self._send_fallback(n, key, render, f"no active Slack user has the email {email}")
        try:
            dm = self._call(lambda: self._client.conversations_open(users=user_id),
                            channel="their DM", who=who)
            message = render(None)
            channel, ts = self._post(str(dm["channel"]["id"]), message, key, who=who)
        except SlackPermanentError as err:
            # A cached id can outlive the account; a fresh lookup then reports users_not_found and the
            # message reaches the fallback channel instead of dead-lettering.
            if cached and allow_refresh and err.code in ("user_disabled", "is_archived", "user_not_found"):
                self._users.pop(email.lower(), None)
                return self._send_dm(n, key, render, allow_refresh=False)
            raise
        return f"{channel}:{ts}"

    def _lookup(self, email: str, who: str) -> tuple[str | None, bool]:
        """(user id or None, whether it came from the cache)."""
        now, cache_key = self._clock(), email.lower()
        hit = self._users.get(cache_key)
        if hit is not None and hit[1] > now:
            return hit[0], True

        def lookup() -> str | None:
            try:
                return str(self._client.users_lookupByEmail(email=email)["user"]["id"])
            except SlackApiError as err:
                if err.response.get("error") == "users_not_found":
                    return None
                raise

        user_id = self._call(lookup, channel="users.lookupByEmail", who=who)
        self._users[cache_key] = (user_id, now + (self._hit_ttl if user_id else self._miss_ttl))
        return user_id, False

    def _send_fallback(self, n: Notification, key: str, render: Render, reason: str) -> str:
        who = self._who(n)
        if self._fallback is None:
            target = n.recipient_email or who
            raise PermanentError(f"cannot DM {who}: {reason}, and no fallback channel is configured: set "
                                 f"{FALLBACK_ENV} or add {target} to Slack")
        # No <@U…> mention is possible for someone Slack doesn't know: name and email are the mention.
        note = (f":information_source: For *{escape(who)}*: posted here because {escape(reason)}. "
                "Add them to Slack (or fix their email in the directory) to get DMs.")
        message = render(note)
        channel, ts = self._post(self._fallback, message, key, who=f"the fallback channel ({FALLBACK_ENV})")
        log.warning("slack DM fell back to channel", extra={"lead": n.lead.crm_id, "kind": n.kind,
                                                            "channel": channel, "reason": reason})
        return f"fallback:{channel}:{ts}"

    @staticmethod
    def _who(n: Notification) -> str:
        # The lead's owner name only stands in when the owner is the one being addressed.
        name = n.recipient_name or (n.lead.owner_name if n.persona == "owner" else None)
        email = n.recipient_email
        if name and email:
            return f"{name} <{email}>"
        return name or email or f"the {n.persona}"

    def _message(self, n: Notification, key: str, fallback_note: str | None = None) -> SlackMessage:
        try:
            return build_message(n, key, self._templates, fallback_note=fallback_note)
        except ZoneInfoNotFoundError:
            raise PermanentError(f"unknown time zone {n.tz!r} for {n.kind} (rule {n.rule_id}): fix the "
                                 "market's tz in the policy (an IANA name such as Asia/Kolkata)") from None
        except ValueError as err:  # naive datetimes: a bug upstream, retrying cannot help
            raise PermanentError(f"cannot render {n.kind} for lead {n.lead.crm_id}: {err}") from err

    # ---- Web API ----
    def _post(self, channel: str, message: SlackMessage, key: str, *, who: str) -> tuple[str, str]:
        # The key in metadata makes a duplicate (at-least-once delivery) traceable to its outbox row.
        response = self._call(lambda: self._client.chat_postMessage(
            channel=channel, text=message.text, blocks=message.blocks,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": key}},
        ), channel=_channel_label(channel), who=who)
        return str(response["channel"]), str(response["ts"])

    def _call(self, call: Callable[[], T], *, channel: str, who: str) -> T:
        try:
            return call()
        except SlackApiError as err:
            raise map_slack_error(err, channel=channel, who=who, bot=self._bot) from None
        except (OSError, HTTPException) as err:  # URLError, timeouts, resets are all OSError
            raise TransientError(f"Slack unreachable: {type(err).__name__}: {err}") from err
