"""Error translation and session renewal, with `responses` standing in for Salesforce."""

from __future__ import annotations

import pytest
import requests
import responses

from connectors.salesforce.client import SalesforceClient, build_sf
from sidecar.ports import PermanentError, TransientError

BASE = "https://acme.my.salesforce.com/services/data/v59.0"


def client(relogin: bool = False) -> SalesforceClient:
    sf = build_sf("old-session", "acme.my.salesforce.com", requests.Session(), "59.0")
    return SalesforceClient(sf, (lambda: ("new-session", "acme.my.salesforce.com")) if relogin else None)


def error(status: int, code: str, message: str = "m") -> dict[str, object]:
    return {"status": status, "json": [{"errorCode": code, "message": message}]}


@responses.activate
def test_limit_is_transient_with_an_hour_hint() -> None:
    responses.get(f"{BASE}/limits/", **error(403, "REQUEST_LIMIT_EXCEEDED",  # type: ignore[arg-type]
                                             "TotalRequests Limit exceeded."))
    with pytest.raises(TransientError) as caught:
        client().rest("GET", "limits/")
    assert caught.value.retry_after == 3600


@responses.activate
@pytest.mark.parametrize("message", ["ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
                                     "ConcurrentPerOrgLongTxn Limit exceeded."])
def test_concurrency_limits_take_a_short_backoff(message: str) -> None:
    responses.get(f"{BASE}/limits/", **error(403, "REQUEST_LIMIT_EXCEEDED", message))  # type: ignore[arg-type]
    with pytest.raises(TransientError, match="busy") as caught:
        client().rest("GET", "limits/")
    assert caught.value.retry_after == 30


@responses.activate
@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (503, "SERVER_UNAVAILABLE", TransientError),
        (500, "UNKNOWN_EXCEPTION", TransientError),
        (400, "INVALID_FIELD", PermanentError),
        (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", PermanentError),
        (403, "INSUFFICIENT_ACCESS", PermanentError),
    ],
)
def test_status_and_code_decide_the_class(status: int, code: str, kind: type[Exception]) -> None:
    responses.get(f"{BASE}/limits/", **error(status, code, "Phone must be set"))  # type: ignore[arg-type]
    with pytest.raises(kind) as caught:
        client().rest("GET", "limits/")
    assert code in str(caught.value)


@responses.activate
def test_timeouts_are_transient() -> None:
    responses.get(f"{BASE}/limits/", body=requests.exceptions.ConnectTimeout("slow"))
    with pytest.raises(TransientError, match="unreachable"):
        client().rest("GET", "limits/")


@responses.activate
def test_expired_session_is_renewed_exactly_once() -> None:
    responses.get(f"{BASE}/limits/", **error(401, "INVALID_SESSION_ID"))  # type: ignore[arg-type]
    renewing = client(relogin=True)
    with pytest.raises(PermanentError, match="could not be renewed"):
        renewing.rest("GET", "limits/")
    assert len(responses.calls) == 2  # the original try and one retry with the new session
    assert responses.calls[1].request.headers["Authorization"] == "Bearer new-session"
