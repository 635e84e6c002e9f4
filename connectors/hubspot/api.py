"""The one way connector code calls HubSpot: rate-limited, 429-retried, errors translated.

`call(kind, "crm.objects.search_api", "do_search", ...)` resolves the endpoint on the current
client (cached, so urllib3 keeps its connection pool) and asks for the raw response, which is
parsed with `json.loads`: the generated models' deserialisation (dateutil on every timestamp)
costs far more than the HTTP round trip on large pages.

Every send goes through the rate gate, resends included: urllib3 itself only retries failed
connects (see `auth.TRANSPORT_RETRY`); a network error after that is resent here, at most
`network_retries` times, and so is a 5xx answer to a call that may be resent (a search or read
failing once must not fail a whole poll). Resending is safe for searches, reads and the owner PATCH (it sets an
absolute value). A create is not resent blindly (`resend=False`): a network error after the request
left, or a 5xx, may mean HubSpot applied it, so it raises `errors.Uncertain` and the writer decides
(it looks the key up before creating again, see `creates.py`). Failed connects are resent even then:
nothing reached HubSpot.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any, Literal

import urllib3

from connectors.hubspot.auth import HubSpotAuth
from connectors.hubspot.errors import Uncertain, body_of, headers_of, is_api_exception, translate
from connectors.hubspot.limits import RateLimiter
from sidecar.meters import METERS
from sidecar.ports import TransientError

log = logging.getLogger(__name__)

Kind = Literal["search", "general"]
# Waits up to this long are slept here and the same request sent again; longer ones (the DAILY
# limit above all, hours away) are handed to the dispatcher's scheduled retry at once, so that no
# thread sits blocked while other work could go on.
MAX_INLINE_WAIT_S = 10.0
# (connect, read) seconds: without it a HubSpot that accepts the connection and never answers would
# hold the job (and its open transaction) forever; the read limit leaves room for 200-object batches.
REQUEST_TIMEOUT_S = (5.0, 30.0)
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError, TimeoutError)
# Failures before the request was sent: resending cannot duplicate anything.
_NOT_SENT = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError)


def _never_sent(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps the last error
    return isinstance(exc, _NOT_SENT) or isinstance(reason, _NOT_SENT)


class HubSpotApi:
    def __init__(self, auth: HubSpotAuth, limiter: RateLimiter, network_retries: int = 1,
                 timeout: tuple[float, float] = REQUEST_TIMEOUT_S) -> None:
        self.auth = auth
        self.limiter = limiter
        self.network_retries = network_retries
        self.timeout = timeout
        self.calls: Counter[str] = Counter()  # by "endpoint.method", for benchmarks and reports
        self._endpoints: dict[str, Any] = {}

    def endpoint(self, path: str) -> Any:
        if path not in self._endpoints:
            target: Any = self.auth.client
            for part in path.split("."):
                target = getattr(target, part)
            self._endpoints[path] = target
        return self._endpoints[path]

    def call(self, kind: Kind, path: str, method: str, *args: Any, scope: str | None = None,
             resend: bool = True, **kwargs: Any) -> Any:
        """Perform one API call; returns the parsed JSON body (None for an empty body).
        `resend=False`: a network error once the request may have left raises `Uncertain`."""
        what = f"{path.rsplit('.', 1)[-1]}.{method}"
        refreshed = False
        throttled = 0
        dropped = 0
        while True:
            self.limiter.before(kind == "search")
            self.calls[what] += 1
            try:
                raw = getattr(self.endpoint(path), method)(*args, _preload_content=False,
                                                           _request_timeout=self.timeout, **kwargs)
            except Exception as exc:
                if not is_api_exception(exc):
                    if not isinstance(exc, _NETWORK_ERRORS):
                        raise
                    if not resend and not _never_sent(exc):
                        raise Uncertain(f"HubSpot {what}: network error after sending: {type(exc).__name__}; "
                                        "it may have been applied") from exc
                    if dropped < self.network_retries:
                        dropped += 1
                        log.debug("hubspot network error, resending", extra={"call": what,
                                                                             "error": type(exc).__name__})
                        continue  # through the gate again: HubSpot may have counted the first one
                    raise TransientError(f"HubSpot {what}: network error: {type(exc).__name__}") from exc
                status = int(getattr(exc, "status", 0) or 0)
                self.limiter.observe(headers_of(exc), body_of(exc) if status == 429 else None)
                METERS.api_call("hubspot", self.limiter.daily_usage)
                if status == 429:
                    body = body_of(exc)
                    wait = self.limiter.backoff(headers_of(exc), body)
                    policy = str(body.get("policyName") or "")
                    if policy == "DAILY" or wait > MAX_INLINE_WAIT_S:
                        raise TransientError(f"HubSpot {what}: rate limited ({policy or 'unknown policy'}) "
                                             f"for {wait:.0f} s; retried later", retry_after=wait) from exc
                    if throttled >= self.limiter.settings.max_429_retries:
                        raise TransientError(f"HubSpot {what}: still rate limited after {throttled} retries",
                                             retry_after=wait) from exc
                    throttled += 1
                    log.info("hubspot rate limited, retrying", extra={"call": what, "wait_s": wait})
                    self.limiter.sleep(wait)
                    continue  # the very same request again: no page is skipped
                if status >= 500 and resend and "create" not in method and dropped < self.network_retries:
                    dropped += 1
                    log.debug("hubspot %s, resending", status, extra={"call": what})
                    continue  # a read or search: resending it changes nothing (creates: see creates.py)
                if status == 401 and self.auth.can_refresh and not refreshed:
                    refreshed = True
                    self.auth.refresh()
                    self._endpoints.clear()  # endpoints hold the old token
                    continue
                raise translate(exc, what, scope) from exc
            self.limiter.observe(raw.headers)  # the daily usage, for the reader's quota guard
            METERS.api_call("hubspot", self.limiter.daily_usage)
            data = raw.data
            return json.loads(data) if data else None
