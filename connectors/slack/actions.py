"""Receiver for Slack button clicks (interactivity requests): verify, parse, hand plain data on.

The core never sees Slack's payload format: it gets a `SlackAction` and answers with an `ActionReply`.
Slack wants the HTTP 200 within 3 seconds and ignores its body, so the receiver acknowledges at once
and hands the click to a worker thread (clicks.py), which decides and replies via `response_url`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from slack_sdk.signature import Clock, SignatureVerifier

from connectors.slack.messages import OPEN_RECORD_ACTION
from sidecar.web.limits import media_type

log = logging.getLogger(__name__)
Submit = Callable[[Callable[[], None]], object]  # runs the work elsewhere, returns at once
CLICK_WORKERS = 4  # clicks being processed at once; more wait in the executor's queue, already acked
# ASCII digits only: str.isdigit() and int() also accept "²" or "٣", and int("²") raises (a 500).
_TIMESTAMP = re.compile(r"[0-9]{1,15}", re.ASCII)


@dataclass(frozen=True)
class SlackAction:
    action_id: str  # "ack", "snooze_15", "revert_reassignment" (see connectors.slack.messages)
    user_id: str
    user_name: str
    value: dict[str, Any]  # the button's JSON: crm, crm_id, key
    response_url: str | None
    channel_id: str | None
    message_ts: str | None

    @property
    def crm(self) -> str:
        return str(self.value["crm"])

    @property
    def crm_id(self) -> str:
        return str(self.value["crm_id"])

    @property
    def idempotency_key(self) -> str:
        return str(self.value["key"])


@dataclass(frozen=True)
class ActionReply:
    text: str
    ephemeral: bool = True  # only the clicking user sees it


VALUE_KEYS = ("crm", "crm_id", "key")


class MalformedPayload(ValueError):
    """The request was authentic but not a block_actions payload we can read."""


class _InjectedClock(Clock):
    # SignatureVerifier wants an object with now(); the sidecar injects plain callables.
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def _str(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def _dict(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def parse_action(body: bytes) -> SlackAction | None:
    """A block_actions form body -> SlackAction; None for clicks on the link button (nothing to do)."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError) as err:
        reason = type(err).__name__
        raise MalformedPayload(f"expected a form field 'payload' holding JSON ({reason})") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        kind = payload.get("type") if isinstance(payload, dict) else type(payload).__name__
        raise MalformedPayload(f"unsupported interaction type {kind!r}; only block_actions")
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else None
    action_id = _str(action, "action_id") if action is not None else None
    user_id = _str(_dict(payload, "user"), "id")
    if action is None or action_id is None or user_id is None:
        raise MalformedPayload("block_actions payload without actions[0].action_id or user.id")
    if action_id == OPEN_RECORD_ACTION:
        return None  # Slack opens the URL itself; it still tells us about the click
    try:
        value = json.loads(_str(action, "value") or "")
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in VALUE_KEYS):
        raise MalformedPayload(f"action {action_id!r}: value is not the sidecar's JSON (crm, crm_id, key)")
    user, container = _dict(payload, "user"), _dict(payload, "container")
    return SlackAction(
        action_id=action_id, user_id=user_id,
        user_name=_str(user, "username") or _str(user, "name") or user_id, value=value,
        response_url=_str(payload, "response_url"),
        channel_id=_str(_dict(payload, "channel"), "id") or _str(container, "channel_id"),
        message_ts=_str(_dict(payload, "message"), "ts") or _str(container, "message_ts"),
    )


def reply_body(reply: ActionReply) -> dict[str, Any]:
    """The JSON posted to a click's response_url: a new message, never a replacement of ours."""
    return {"response_type": "ephemeral" if reply.ephemeral else "in_channel", "replace_original": False,
            "text": reply.text}


def slack_actions_router(signing_secret: str, on_action: Callable[[SlackAction], object],
                         clock: Callable[[], float] = time.time, submit: Submit | None = None) -> APIRouter:
    """`POST /slack/actions`: 401 unless signed by Slack within 5 minutes, 400 if unreadable, else
    200 at once; `on_action` runs afterwards through `submit` (default: a small thread pool)."""
    # SignatureVerifier checks |now - timestamp| <= 300 s and compares with hmac.compare_digest.
    verifier = SignatureVerifier(signing_secret, clock=_InjectedClock(clock))
    router = APIRouter()
    run_later: Submit = submit or ThreadPoolExecutor(max_workers=CLICK_WORKERS,
                                                     thread_name_prefix="slack-click").submit

    def work(action: SlackAction) -> None:
        try:
            on_action(action)
        except Exception:  # the pool would keep it in a Future nobody reads: log it instead
            log.exception("button click %s by %s failed", action.action_id, action.user_id)

    @router.post("/slack/actions")
    async def slack_actions(request: Request) -> Response:
        body = await request.body()  # the raw bytes: the signature covers them exactly
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature")
        # int() inside the verifier would raise on garbage, so only ASCII digits reach it.
        if not _TIMESTAMP.fullmatch(timestamp) or not _valid(verifier, body, timestamp, signature):
            return JSONResponse({"error": "invalid or stale Slack signature"}, status_code=401)
        if media_type(request.headers.get("content-type")) != "application/x-www-form-urlencoded":
            return JSONResponse({"error": "expected Content-Type: application/x-www-form-urlencoded"},
                                status_code=415)
        try:
            action = parse_action(body)
        except MalformedPayload as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        if action is not None:  # the link button needs nothing: Slack opened the URL itself
            # Acknowledge first: the database and Slack calls must not hold the 200 past 3 seconds.
            run_later(lambda: work(action))
        return Response(status_code=200)

    return router


def _valid(verifier: SignatureVerifier, body: bytes, timestamp: str, signature: str | None) -> bool:
    try:
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except UnicodeDecodeError:  # the verifier decodes the body as UTF-8 before hashing
        return False
