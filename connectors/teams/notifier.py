"""`Notifier` over Microsoft Teams Workflows webhooks ("When a Teams webhook request is received").

Two workflows, both set up by the admin (README, "Microsoft Teams"): one posts in a chat with the
person whose e-mail the payload's `recipient` carries (`via: teams_chat`); one per team posts in
that team's channel (`via: teams_channel`, its URL in the env var the directory names).

What a workflow answers, as checked for this module: 202 Accepted with an empty body once the run
is queued (200 from some older endpoints; any 2xx is success; the run happens afterwards, so a
failure inside the workflow, such as an unknown recipient, is only visible in its run history);
429 with Retry-After when throttled; 400 for a body it cannot take; 401/403 when the URL's
signature is wrong; 404 when the workflow is gone; 413 above ~28 KB (cards.py keeps below it).

Retries belong to the outbox (it owns the injected clock and the key): one POST per call, every
failure a TransientError or PermanentError. Workflow URLs carry a signature (`sig=`): they are
secrets, never logged and never in an error message (`redact_url` keeps host and workflow id).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfoNotFoundError

import requests

from connectors.teams.cards import digest_payload, encode, payload
from sidecar.ports import Notification, PermanentError, TransientError

log = logging.getLogger(__name__)
CHAT_URL_ENV = "SIDECAR_TEAMS_CHAT_WORKFLOW_URL"
# Workflows trigger URLs: Power Platform (…environment.api.powerplatform.com/powerautomate/automations/
# direct/workflows/<id>/triggers/manual/paths/invoke?…&sig=…) or the older Logic Apps host
# (prod-NN.<region>.logic.azure.com/workflows/<id>/triggers/manual/paths/invoke?…&sig=…).
_WORKFLOW_PATH = re.compile(r"/workflows/(?P<id>[0-9A-Za-z-]+)/triggers/[^/]+/paths/invoke/?$")
Resolve = Callable[[str], str | None]  # env var name -> its value (os.environ, then .env)


def url_problem(url: str, *, allow_http: bool = False) -> str | None:
    """Why `url` cannot be a Workflows webhook URL, or None. Never echoes the URL (it is a secret)."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        return "is not an https:// URL (copy the whole HTTP URL from the workflow's trigger)"
    if not parts.hostname or not _WORKFLOW_PATH.search(parts.path):
        return ("does not look like a Workflows trigger URL (…/workflows/<id>/triggers/manual/paths/invoke?…): "
                "copy it from the 'When a Teams webhook request is received' trigger")
    if "sig=" not in parts.query:
        return "has no sig= signature: copy the whole URL, including everything after the '?'"
    return None


def redact_url(url: str) -> str:
    """Host and workflow id only: enough to tell workflows apart in a message, no signature."""
    parts = urlsplit(url)
    match = _WORKFLOW_PATH.search(parts.path)
    return f"{parts.hostname or '?'} workflow {match.group('id') if match else '?'}"


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: the outbox's own backoff is as good


def _detail(response: requests.Response) -> str:
    """The workflow's own words (error.code / error.message), short, on one line."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        text = ": ".join(str(error[k]) for k in ("code", "message") if error.get(k))
    else:
        text = response.text if isinstance(response.text, str) else ""
    text = " ".join(text.split())
    return text[:300] if text else f"HTTP {response.status_code}"


def map_response(response: requests.Response, *, env: str, where: str) -> TransientError | PermanentError:
    """A workflow's non-2xx answer -> retry or not, with what to fix (`env` names the URL's variable)."""
    status, detail = response.status_code, _detail(response)
    if status == 429:
        retry_after = _retry_after(response)
        return TransientError(f"Teams workflow throttled ({where}; retry after "
                              f"{response.headers.get('Retry-After') or '?'} s)", retry_after=retry_after)
    if status >= 500 or status == 408:
        return TransientError(f"Teams workflow server error {status} ({where}): {detail}")
    if status in (401, 403):
        return PermanentError(f"Teams refused the workflow URL's signature (HTTP {status}, {where}): copy the "
                              f"trigger's URL again, with everything after the '?', into {env}")
    if status == 404:
        return PermanentError(f"Teams workflow not found (HTTP 404, {where}): it was deleted, turned off or the "
                              f"URL is incomplete: create it again (README, Microsoft Teams) and update {env}")
    if status == 413:
        return PermanentError(f"Teams refused the card as too large (HTTP 413, {where}): lower "
                              "connectors.teams.cards.PAYLOAD_BUDGET and report it")
    return PermanentError(f"Teams workflow refused the card (HTTP {status}, {where}: {detail}): check that the "
                          "workflow starts with 'When a Teams webhook request is received' and posts "
                          "attachments[0].content with 'Post card in a chat or channel' (README, Microsoft "
                          f"Teams); the URL is in {env}")


class TeamsNotifier:
    def __init__(self, resolve: Resolve, *, templates: Mapping[str, str] | None = None,
                 dashboard_base: str | None = None, session: requests.Session | None = None,
                 timeout: float = 10.0, allow_http: bool = False) -> None:
        """`resolve` reads an env var by name (the chat workflow's is CHAT_URL_ENV); `allow_http`
        only for the loopback emulator."""
        self._resolve, self._templates = resolve, dict(templates or {})
        self.dashboard_base = dashboard_base  # the sidecar's public URL: managers' cards link to the dashboard
        self._timeout, self._allow_http = timeout, allow_http
        self._http = session or requests.Session()

    def send(self, notification: Notification, idempotency_key: str) -> str:
        env, url = self._target(notification)

        def render(note: str | None) -> dict[str, Any]:
            return payload(notification, idempotency_key, self._templates, dashboard_base=self.dashboard_base,
                           note=note)
        return self._post(env, url, self._rendered(notification, render), notification)

    def send_digest(self, notifications: Sequence[Notification], idempotency_key: str) -> str:
        first = notifications[0]
        env, url = self._target(first)
        body = self._rendered(first, lambda note: digest_payload(notifications, idempotency_key, note=note))
        return self._post(env, url, body, first)

    # ---- where it goes ----
    def _target(self, n: Notification) -> tuple[str, str]:
        """(env var name, URL) of the workflow for this notification's route."""
        team = n.extra.get("team")
        if n.via == "teams_chat":
            if not (n.recipient_email or "").strip():
                who = n.recipient_name or f"the {n.persona}"
                raise PermanentError(f"no e-mail on record for {who}, so no Teams chat can be addressed "
                                     f"({n.kind}, lead {n.lead.crm_id}): add their email in the directory")
            env = CHAT_URL_ENV
        elif n.via == "teams_channel":
            if not n.channel:
                raise PermanentError(f"no Teams channel workflow for persona {n.persona}"
                                     + (f" of team {team}" if team else "")
                                     + f" ({n.kind}, lead {n.lead.crm_id}): set the team's chat: teams and "
                                     "teams_workflow_env: in the directory")
            env = n.channel
        else:
            raise PermanentError(f"the Teams notifier got route via: {n.via}: wire it to the Slack notifier")
        url = (self._resolve(env) or "").strip()
        if not url:
            raise PermanentError(f"{env} is not set: put the URL of the "
                                 + ("chat workflow" if n.via == "teams_chat" else "team channel's workflow")
                                 + " in .env (README, Microsoft Teams)")
        problem = url_problem(url, allow_http=self._allow_http)
        if problem:
            raise PermanentError(f"{env} {problem}")
        return env, url

    def _rendered(self, n: Notification, render: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
        try:
            return render(None)
        except ZoneInfoNotFoundError:
            raise PermanentError(f"unknown time zone {n.tz!r} for {n.kind} (rule {n.rule_id}): fix the "
                                 "market's tz in the policy (an IANA name such as Asia/Kolkata)") from None
        except ValueError as err:  # naive datetimes: a bug upstream, retrying cannot help
            raise PermanentError(f"cannot render {n.kind} for lead {n.lead.crm_id}: {err}") from err

    # ---- HTTP ----
    def _post(self, env: str, url: str, body: dict[str, Any], n: Notification) -> str:
        where = redact_url(url)
        try:
            response = self._http.post(url, data=encode(body), timeout=self._timeout,
                                       headers={"Content-Type": "application/json; charset=utf-8"})
        except requests.RequestException as err:
            # Never str(err): requests puts the full URL, signature included, in its messages.
            raise TransientError(f"Teams workflow unreachable ({where}): {type(err).__name__}") from None
        if 200 <= response.status_code < 300:
            # The key, not a run id, names the message: a 202 need not carry one, and noise control
            # counts distinct results as distinct messages (a digest's members share its key).
            return f"teams:{'chat' if n.via == 'teams_chat' else env}:{body['idempotencyKey']}"
        error = map_response(response, env=env, where=where)
        log.warning("teams workflow answered %s", response.status_code,
                    extra={"lead": n.lead.crm_id, "kind": n.kind, "workflow": where})
        raise error
