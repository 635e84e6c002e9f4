"""HubSpot failures translated into the core's two retry classes (plus `Rejected` for callers that
expect a particular 4xx, such as 404 on a lookup or 409 on a unique property).

Every generated sub-package of hubspot-api-client raises its own `ApiException` class, with no
shared base beyond `Exception`, so they are recognised by shape rather than by class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sidecar.ports import PermanentError, TransientError

# Instructions for the admin (not a secret, despite the name).
RENEW_HELP = ("create a new private app access token in HubSpot (Settings > Integrations > Private Apps) "
              "and set SIDECAR_HUBSPOT_ACCESS_TOKEN")


class Rejected(PermanentError):
    """A 4xx HubSpot answered on purpose; `status` and `category` let callers handle expected ones."""

    def __init__(self, message: str, status: int, category: str = "", body: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.category = category
        self.body = dict(body or {})


class Uncertain(TransientError):
    """The request may have been applied before it failed (a 5xx, or the connection dropped after
    the request was sent): retrying a read is harmless, re-sending a create is not (`writer`)."""


def is_api_exception(exc: BaseException) -> bool:
    return type(exc).__name__.endswith("Exception") and hasattr(exc, "status") and hasattr(exc, "body")


def body_of(exc: Any) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"message": str(raw)[:500]}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:500]}


def headers_of(exc: Any) -> dict[str, str]:
    raw = getattr(exc, "headers", None) or {}
    return {str(k): str(v) for k, v in dict(raw).items()}


def translate(exc: Any, what: str, scope: str | None = None) -> Exception:
    """The port-level error for a non-429 ApiException raised while doing `what`."""
    status = int(getattr(exc, "status", 0) or 0)
    body = body_of(exc)
    message = str(body.get("message") or getattr(exc, "reason", "") or "no message")
    category = str(body.get("category") or "")
    if status == 0 or status >= 500:
        return Uncertain(f"HubSpot {what}: HTTP {status or 'connection error'}: {message}")
    if status == 429:
        return TransientError(f"HubSpot {what}: rate limited: {message}")
    if status == 401:
        return PermanentError(f"HubSpot {what}: token revoked or expired ({category or 'HTTP 401'}): "
                              f"{RENEW_HELP}")
    if status == 403:
        needed = scope or _scope_from(body) or "the scope this call needs"
        return PermanentError(f"HubSpot {what}: missing scope {needed}: add it to the private app "
                              "(Settings > Integrations > Private Apps > Scopes) and update the token")
    return Rejected(f"HubSpot {what}: HTTP {status} {category}: {message}", status, category, body)


def _scope_from(body: Mapping[str, Any]) -> str | None:
    # MISSING_SCOPES errors list the required scopes under errors[].context.requiredGranularScopes.
    for error in body.get("errors") or []:
        context = error.get("context") or {} if isinstance(error, Mapping) else {}
        scopes = context.get("requiredGranularScopes") or context.get("requiredScopes")
        if scopes:
            return ", ".join(str(s) for s in scopes)
    return None
