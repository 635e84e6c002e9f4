"""A button click's work, done after Slack has had its HTTP 200 (connectors.slack.actions).

Slack wants an interactivity request acknowledged within 3 seconds and shows the clicker nothing from
that response's body; the answer goes to the click's `response_url` (valid for 30 minutes, up to 5
posts; docs.slack.dev "Handling user interaction"). So the receiver only verifies and parses, and
this worker, on its own thread, then:

1. finds out who clicked: `users.info` (for the e-mail) only when no rep is linked to that Slack id yet;
2. asks the core to decide (database work, audited, refusals included);
3. posts the reply to `response_url`.

Slack being unreachable never loses the click: `users.info` and the reply post are retried with
exponential backoff; if Slack still cannot say who clicked, the core records the click as refused for
that reason (so it is audited) and the person is told to click again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.slack.actions import ActionReply, SlackAction, reply_body
from connectors.slack.notifier import map_slack_error
from sidecar.ports import PermanentError, TransientError

log = logging.getLogger(__name__)
Sleep = Callable[[float], None]
PostJson = Callable[[str, dict[str, Any]], int]  # (url, body) -> HTTP status

# users.info waits at most ~15 s (1+2+4+8) before the click is decided without an e-mail; the reply
# is tried for ~4 minutes (1, 2, 4, ... capped at 60 s), well inside response_url's 30 minutes.
LOOKUP_ATTEMPTS, REPLY_ATTEMPTS, MAX_WAIT_S = 5, 9, 60.0
FAILED_TEXT = "The sidecar could not record this click ({reason}); please click again in a minute."


@dataclass(frozen=True)
class Clicker:
    """What Slack told us about the person: their e-mail, or that Slack could not be asked."""

    email: str | None
    lookup_failed: bool = False


def post_json(url: str, body: dict[str, Any]) -> int:
    return requests.post(url, json=body, timeout=5).status_code


class ClickWorker:
    """Callable with a `SlackAction`; meant to run off the request path (see the module docstring)."""

    def __init__(self, decide: Callable[[SlackAction, Clicker], ActionReply], *,
                 is_linked: Callable[[str], bool], client: WebClient | None,
                 post: PostJson = post_json, sleep: Sleep = time.sleep) -> None:
        self.decide = decide
        self.is_linked = is_linked  # a rep already carries this Slack id: no users.info needed
        self.client = client
        self.post = post
        self.sleep = sleep

    def __call__(self, action: SlackAction) -> None:
        try:
            reply = self.decide(action, self._clicker(action))
        except Exception as err:  # the database or a bug: tell the person, keep the worker alive
            log.exception("button click %s by %s could not be processed", action.action_id, action.user_id)
            reply = ActionReply(FAILED_TEXT.format(reason=type(err).__name__))
        self._reply(action, reply)

    def _retrying(self, attempts: int) -> Retrying:
        return Retrying(stop=stop_after_attempt(attempts), sleep=self.sleep,
                        wait=wait_exponential(multiplier=1, max=MAX_WAIT_S),
                        retry=retry_if_exception_type(TransientError))

    def _clicker(self, action: SlackAction) -> Clicker:
        if self.client is None or self.is_linked(action.user_id):
            return Clicker(None)
        client = self.client
        try:
            for attempt in self._retrying(LOOKUP_ATTEMPTS):
                with attempt:
                    return Clicker(_email(client, action.user_id))
        except RetryError as err:
            log.warning("Slack users.info for a button click failed %d times (%s); the click is recorded "
                        "as unidentified", LOOKUP_ATTEMPTS, err.last_attempt.exception())
            return Clicker(None, lookup_failed=True)
        except PermanentError as err:  # missing scope, revoked token: nothing to wait for
            log.warning("Slack users.info for a button click failed: %s", err)
            return Clicker(None, lookup_failed=True)
        raise AssertionError("unreachable: Retrying either returns or raises")  # pragma: no cover

    def _reply(self, action: SlackAction, reply: ActionReply) -> None:
        if not action.response_url:
            log.warning("button click %s came without a response_url; the reply is not shown", action.action_id)
            return
        url, body = action.response_url, reply_body(reply)
        try:
            for attempt in self._retrying(REPLY_ATTEMPTS):
                with attempt:
                    self._post_once(url, body)
        except RetryError as err:
            log.warning("could not post a button click's reply to Slack after %d tries: %s", REPLY_ATTEMPTS,
                        err.last_attempt.exception())

    def _post_once(self, url: str, body: dict[str, Any]) -> None:
        try:
            status = self.post(url, body)
        except requests.RequestException as err:
            raise TransientError(f"Slack unreachable: {type(err).__name__}") from err
        if status == 429 or status >= 500:
            raise TransientError(f"Slack answered HTTP {status} to the reply")
        if status >= 400:  # expired_url / used_url: a retry cannot help
            log.warning("Slack refused a button click's reply (HTTP %s): the response_url expired or was "
                        "used up", status)


def _email(client: WebClient, user_id: str) -> str | None:
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError as err:
        raise map_slack_error(err, channel="users.info", who=user_id, bot="the bot") from None
    except (OSError, HTTPException) as err:  # URLError, timeouts and resets are OSError
        raise TransientError(f"Slack unreachable: {type(err).__name__}") from err
    email = (user.get("profile") or {}).get("email") if isinstance(user, dict) else None
    return str(email) if email else None
