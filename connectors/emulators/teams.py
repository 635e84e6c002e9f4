"""Loopback Microsoft Teams Workflows emulator: "When a Teams webhook request is received" triggers.

Each workflow the test or demo adds gets a trigger URL shaped like Power Platform's
(`/powerautomate/automations/direct/workflows/<id>/triggers/manual/paths/invoke?api-version=1&sp=
%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=<signature>`) and posts what it accepts to a chat with the
payload's `recipient` (a chat workflow) or to one channel (a channel workflow). Every accepted card
is recorded with the payload's `idempotencyKey`, so a retry after a timeout shows as a duplicate.

What it answers, and why:
- 202 Accepted, empty body, `x-ms-workflow-run-id` header: what Workflows answer once a run is queued.
- 401 `DirectApiInvalidAuthorizationSignature` for a wrong `sig`, 404 `WorkflowNotFound` for an
  unknown or removed workflow, 400 `TriggerRequestMethodNotValid` for anything but POST.
- 400 `TriggerInputSchemaMismatch` when the body is not `{"type": "message", "attachments":
  [one {"contentType": "application/vnd.microsoft.card.adaptive", "content": {...}}]}`.
- Stricter than the real service, on purpose: a card Teams cannot render (version above 1.5, an
  element without its required fields, Action.Submit/Execute that a workflow post cannot serve) and a
  body above 28 KB are refused here with 400 / 413. The real workflow accepts them with 202 and fails
  later in its run history, where the sidecar cannot see it; the emulator makes that failure visible.
- 429 with Retry-After from the `rate_limit` fault (`throttle_next`), and when `post_interval` is set
  and a workflow is posted to faster than that (measured on the emulator's clock, never wall time).
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connectors.emulators.http import Emulator, Request, Response

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
PAYLOAD_LIMIT = 28 * 1024
MAX_VERSION = (1, 5)  # the newest Adaptive Card schema Teams renders
_PATH = r"/powerautomate/automations/direct/workflows/(?P<workflow>[0-9a-f]+)/triggers/manual/paths/invoke"
_ELEMENTS = {"TextBlock": ("text",), "FactSet": ("facts",), "Container": ("items",), "ColumnSet": (),
             "Image": ("url",), "ActionSet": ("actions",), "RichTextBlock": ("inlines",), "Table": ()}
_ACTIONS = {"Action.OpenUrl": ("url",), "Action.ShowCard": ("card",), "Action.ToggleVisibility": ()}
Args = dict[str, Any]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"error": {"code": code, "message": message}}, headers or {})


def card_errors(card: Any) -> list[str]:
    """Why Teams could not render `card` (empty when it could)."""
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return ["attachments[0].content: type must be 'AdaptiveCard'"]
    errors: list[str] = []
    version = str(card.get("version") or "")
    try:
        major, minor = (int(part) for part in version.split("."))
        if (major, minor) > MAX_VERSION:
            errors.append(f"version {version}: Teams renders Adaptive Cards up to 1.5")
    except ValueError:
        errors.append(f"version {version!r}: expected a schema version such as '1.4'")
    body = card.get("body", [])
    if not isinstance(body, list):
        errors.append("body must be an array")
        body = []
    for i, element in enumerate(body):
        errors += _element_errors(element, f"body[{i}]")
    for i, action in enumerate(card.get("actions") or []):
        errors += _action_errors(action, f"actions[{i}]")
    return errors


def _element_errors(element: Any, where: str) -> list[str]:
    kind = element.get("type") if isinstance(element, dict) else None
    if kind not in _ELEMENTS:
        return [f"{where}: unknown element type {kind!r}"]
    missing = [name for name in _ELEMENTS[kind] if element.get(name) in (None, "")]
    if missing:
        return [f"{where} ({kind}): required property {missing[0]!r} is missing"]
    if kind == "TextBlock" and not isinstance(element["text"], str):
        return [f"{where} (TextBlock): text must be a string"]
    if kind == "FactSet":
        return [f"{where}.facts[{j}]: title and value must be strings" for j, fact in enumerate(element["facts"])
                if not (isinstance(fact, dict) and isinstance(fact.get("title"), str)
                        and isinstance(fact.get("value"), str))]
    return []


def _action_errors(action: Any, where: str) -> list[str]:
    kind = action.get("type") if isinstance(action, dict) else None
    if kind in ("Action.Submit", "Action.Execute"):
        return [f"{where}: {kind} needs a bot to receive it; a workflow post can only link (Action.OpenUrl)"]
    if kind not in _ACTIONS:
        return [f"{where}: unknown action type {kind!r}"]
    url = action.get("url")
    if kind == "Action.OpenUrl" and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        return [f"{where} (Action.OpenUrl): url must be an absolute http(s) URL"]
    return []


def payload_errors(body: Any) -> list[str]:
    """What the webhook trigger's schema refuses in a request body."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    if body.get("type") != "message":
        return ["type must be 'message'"]
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return ["attachments must hold exactly one card"]
    attachment = attachments[0]
    if not isinstance(attachment, dict) or attachment.get("contentType") != CARD_CONTENT_TYPE:
        return [f"attachments[0].contentType must be '{CARD_CONTENT_TYPE}' (Workflows post Adaptive Cards only)"]
    return card_errors(attachment.get("content"))


class TeamsWorkflowsEmulator(Emulator):
    service = "teams"

    def __init__(self, seed: int = 0, clock: Callable[[], datetime] | None = None,
                 post_interval: float | None = None) -> None:
        super().__init__(seed, clock)
        self.post_interval = post_interval  # seconds between posts to one workflow; None = no limit
        self._lock = threading.RLock()
        self.reset()
        self.router.add("POST", _PATH, self._invoke)
        self.router.add("GET", _PATH, self._wrong_method)

    # ---- helpers for tests and the demo ----
    def reset(self) -> None:
        with self._lock:
            self.retry_after = 1
            self._workflows: dict[str, Args] = {}
            self._cards: list[Args] = []
            self._last_post: dict[str, float] = {}
            self._runs = 0
            self.faults.clear()
            self.log.entries.clear()

    def add_workflow(self, name: str, *, kind: str = "channel", channel: str | None = None) -> str:
        """A chat workflow (posts to the payload's `recipient`) or a channel workflow; returns its URL."""
        if kind not in ("chat", "channel"):
            raise ValueError("kind is 'chat' or 'channel'")
        with self._lock:
            workflow_id, sig = secrets.token_hex(16), secrets.token_urlsafe(32)
            self._workflows[workflow_id] = {"name": name, "kind": kind, "channel": channel or name, "sig": sig}
        return (f"{self.url}/powerautomate/automations/direct/workflows/{workflow_id}/triggers/manual/paths/invoke"
                f"?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}")

    def remove_workflow(self, url: str) -> None:
        with self._lock:
            self._workflows.pop(url.split("/workflows/")[1].split("/")[0], None)

    def throttle_next(self, n: int = 1, retry_after: int = 1) -> None:
        self.retry_after = retry_after
        self.faults.add("rate_limit", next_n=n, path_prefix="/powerautomate/")

    def cards(self) -> list[Args]:
        with self._lock:
            return copy.deepcopy(self._cards)

    def export(self) -> list[Args]:
        """Every posted card with where it went (teams.json of `sidecar demo`)."""
        return self.cards()

    def fault_response(self, kind: str, request: Request) -> Response:
        if kind == "rate_limit":
            return _error(429, "WorkflowRequestsThrottled", "Rate limit is exceeded. Try again later.",
                          {"Retry-After": str(self.retry_after)})
        if kind == "expired_session":
            return _error(401, "DirectApiInvalidAuthorizationSignature", "The provided signature is not valid.")
        return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")

    # ---- the trigger ----
    def _wrong_method(self, request: Request) -> Response:
        # The signature is checked before the method (assumed, as for any signed URL): a GET answers
        # whether the URL is right without running the workflow, which is what `sidecar check` sends.
        refused = self._refused(request)
        if refused is not None:
            return refused
        return _error(400, "TriggerRequestMethodNotValid",
                      f"The HTTP method for this request is not valid: expected 'Post' and actual '{request.method}'.")

    def _invoke(self, request: Request) -> Response:
        with self._lock:
            refused = self._refused(request)
            if refused is not None:
                return refused
            workflow = self._workflows[request.params["workflow"]]
            if len(request.body) > PAYLOAD_LIMIT:
                return _error(413, "MessageTooLarge", f"Request Entity too large: {len(request.body)} bytes, "
                              f"the limit is {PAYLOAD_LIMIT}.")
            try:
                body = request.json()
            except ValueError:
                return _error(400, "InvalidRequestContent", "The request content is not valid JSON.")
            errors = payload_errors(body)
            if not errors and workflow["kind"] == "chat" and not str(body.get("recipient") or "").strip():
                errors = ["recipient: a chat workflow needs the person's e-mail"]
            if errors:
                return _error(400, "TriggerInputSchemaMismatch", "; ".join(errors))
            throttled = self._throttle(request.params["workflow"])
            if throttled is not None:
                return throttled
            self._runs += 1
            run_id = f"08585{self._runs:015d}"
            key = str(body.get("idempotencyKey") or "")
            self._cards.append({
                "workflow": workflow["name"], "kind": workflow["kind"],
                "channel": workflow["channel"] if workflow["kind"] == "channel" else None,
                "recipient": body.get("recipient") if workflow["kind"] == "chat" else None,
                "key": key, "duplicate": any(c["key"] == key for c in self._cards) if key else False,
                "run_id": run_id, "at": self.clock().isoformat(), "bytes": len(request.body),
                "card": body["attachments"][0]["content"]})
            return Response(202, b"", {"x-ms-workflow-run-id": run_id})

    def _refused(self, request: Request) -> Response | None:
        workflow = self._workflows.get(request.params["workflow"])
        if workflow is None:
            return _error(404, "WorkflowNotFound", "The workflow could not be found.")
        if not secrets.compare_digest(request.arg("sig") or "", workflow["sig"]):
            return _error(401, "DirectApiInvalidAuthorizationSignature", "The provided signature is not valid.")
        return None

    def _throttle(self, workflow_id: str) -> Response | None:
        now, last = self.clock().timestamp(), self._last_post.get(workflow_id)
        if self.post_interval is not None and last is not None and now - last < self.post_interval:
            wait = max(1, math.ceil(self.post_interval - (now - last)))
            return _error(429, "WorkflowRequestsThrottled", "Rate limit is exceeded.", {"Retry-After": str(wait)})
        self._last_post[workflow_id] = now
        return None
