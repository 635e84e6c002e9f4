"""Salesforce failures translated into the core's two error classes (plus conflicts).

TransientError: worth retrying later (5xx, timeouts, connection failures, API limits).
PermanentError: retrying cannot help; the message says what the admin has to change.

403 REQUEST_LIMIT_EXCEEDED names several limits, told apart only by the message
(developer.salesforce.com, "API Request Limits and Allocations"; help.salesforce.com 000389067):
- "TotalRequests Limit exceeded.": the org's rolling 24-hour allowance is spent. Every integration
  of the org is refused until calls age out of the window: wait long, poll slowly (quota.py).
- "ConcurrentRequests (Concurrent API Requests) Limit exceeded." and "ConcurrentPerOrgLongTxn Limit
  exceeded.": too many long-running (20 s+) requests or transactions at this moment (25 in
  production, 5 in Developer Edition). They clear as those finish: retry after a short pause and
  leave polling alone.
"""

from __future__ import annotations

from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError

from sidecar.ports import PermanentError, TransientError

# Salesforce's daily limit is a rolling 24 h window; an hour is a sane first wait, not a promise.
LIMIT_RETRY_AFTER_S = 3600.0
# A concurrency limit clears when the org's long-running requests finish: seconds to minutes.
CONCURRENCY_RETRY_AFTER_S = 30.0
REQUEST_LIMIT = "REQUEST_LIMIT_EXCEEDED"
_DAILY_LIMIT_NAME = "TotalRequests"  # the message's first word names the limit that was hit
_TRANSIENT_CODES = frozenset({"SERVER_UNAVAILABLE", "UNABLE_TO_LOCK_ROW", "QUERY_TIMEOUT",
                              "REQUEST_RUNNING_TOO_LONG", "CONCURRENT_REQUESTS_LIMIT_EXCEEDED"})
# RequestExceptions a retry cannot fix: the URL or a header we build is wrong.
_CONFIG_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                  requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader)
SESSION_FIX = ("Salesforce rejected the session (INVALID_SESSION_ID) and it could not be renewed: "
               "set SIDECAR_SF_USERNAME/SIDECAR_SF_PASSWORD/SIDECAR_SF_SECURITY_TOKEN or "
               "SIDECAR_SF_CLIENT_ID/SIDECAR_SF_CLIENT_SECRET so the sidecar can log in again, "
               "or issue a new SIDECAR_SF_SESSION_ID")


def error_items(exc: SalesforceError) -> list[dict[str, Any]]:
    """The JSON error list of a failed call (`[{"errorCode", "message", "fields"}]`), or []."""
    content: Any = exc.content
    if isinstance(content, list):
        return [item for item in content if isinstance(item, dict)]
    return []


def error_code(exc: SalesforceError) -> str:
    items = error_items(exc)
    return str(items[0].get("errorCode") or items[0].get("statusCode") or "") if items else ""


def is_daily_limit(exc: SalesforceError) -> bool:
    """Whether `exc` says the org's daily API allowance is spent (not a momentary concurrency limit)."""
    return any(str(item.get("errorCode") or "") == REQUEST_LIMIT
               and str(item.get("message") or "").strip().startswith(_DAILY_LIMIT_NAME)
               for item in error_items(exc))


def describe_error(exc: SalesforceError) -> str:
    items = error_items(exc)
    if not items:
        return f"HTTP {exc.status}: {exc.content!r:.300}"
    return "; ".join(f"{i.get('errorCode') or i.get('statusCode')}: {i.get('message')}"
                     + (f" (fields: {', '.join(i['fields'])})" if i.get("fields") else "") for i in items)


def translate(exc: Exception) -> Exception:
    """The port-level exception for a failed Salesforce call (returned, for `raise ... from exc`)."""
    if isinstance(exc, _CONFIG_ERRORS):
        return PermanentError(f"Salesforce URL or header is invalid ({type(exc).__name__}): {exc}; check "
                              "the instance URL (SIDECAR_SF_INSTANCE_URL / login domain)")
    if isinstance(exc, requests.RequestException):  # timeouts, refused or dropped connections, a
        # response cut off mid-body (ChunkedEncodingError), a bad TLS handshake...: retry later
        return TransientError(f"Salesforce unreachable: {type(exc).__name__}")
    if isinstance(exc, SalesforceAuthenticationFailed):
        return PermanentError(f"Salesforce login failed ({exc.code}): {exc.auth_message}")
    if not isinstance(exc, SalesforceError):
        return exc
    code, text = error_code(exc), describe_error(exc)
    if exc.status == 401:
        return PermanentError(SESSION_FIX)
    if code == REQUEST_LIMIT and is_daily_limit(exc):
        return TransientError("Salesforce daily API request limit reached; calls resume as the rolling "
                              f"24 h window frees up ({text})", retry_after=LIMIT_RETRY_AFTER_S)
    if code == REQUEST_LIMIT:  # a concurrency limit (or one we do not know): it passes in moments
        return TransientError(f"Salesforce is busy with other long-running requests; retrying shortly ({text})",
                              retry_after=CONCURRENCY_RETRY_AFTER_S)
    if exc.status >= 500 or exc.status == 429 or code in _TRANSIENT_CODES:
        return TransientError(f"Salesforce temporarily failed: {text}")
    return PermanentError(f"Salesforce refused the request: {text}")
