"""What the webhook receivers did since the process started: what they ignored, by reason (e.g.
`hubspot.unknown_event_type`, `salesforce.bad_record_id`: shown on /healthz, logged per request),
and every webhook request's answer by route and HTTP status (for /metrics, sidecar.meters).

A receiver skips an event it cannot use instead of refusing the whole delivery, because a refusal
loses the valid events beside it: HubSpot does not retry a 400 and Salesforce drops a message it
could not deliver within 24 hours.
"""

from __future__ import annotations

from collections import Counter

from starlette.routing import Match, Router

from sidecar.meters import METERS, WEBHOOK_PREFIXES, Meters
from sidecar.web.limits import ASGIApp, Message, Receive, Scope, Send

SKIPPED: Counter[str] = Counter()  # the process's own; receivers take another one in tests


class WebhookRequests:
    """`app.add_middleware(WebhookRequests, router=app.router)`: counts each webhook request's status.

    Outermost, so refusals by the body limit (413) and the receivers' own checks (401, 400) count
    too. The route label is the matched route's path; a path no route matches counts as "other",
    so a scanner cannot add label values. (A request the body limit refused never reached the
    router: its label is its path when a route matches it, and the receivers' paths hold no ids.)"""

    def __init__(self, app: ASGIApp, router: Router, meters: Meters = METERS) -> None:
        self.app, self.router, self.meters = app, router, meters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path") or "")
        if scope["type"] != "http" or not path.startswith(WEBHOOK_PREFIXES):
            await self.app(scope, receive, send)
            return
        status = 500  # an app that fails before answering: uvicorn sends a 500

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            self.meters.webhook(self._route(scope, path), status)

    def _route(self, scope: Scope, path: str) -> str:
        matched = getattr(scope.get("route"), "path", None)
        if isinstance(matched, str):
            return matched
        probe = {"type": "http", "path": path, "method": scope.get("method", "POST"), "root_path": ""}
        return path if any(route.matches(probe)[0] == Match.FULL for route in self.router.routes) else "other"
