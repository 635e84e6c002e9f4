"""One authenticated Salesforce connection: session renewal, paging, error translation.

simple-salesforce retries an expired session up to three times itself, and its SFType helper
does so without a bound. We log in ourselves (auth.py) and hand simple-salesforce a bare session,
so the renewal policy lives here, once: renew one time, then report a PermanentError that says
how to fix the credentials.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession, SalesforceGeneralError

from connectors.salesforce.errors import is_daily_limit, translate
from sidecar.meters import METERS

log = logging.getLogger(__name__)
T = TypeVar("T")
Relogin = Callable[[], tuple[str, str]]  # -> (session id, instance host[:port])
DEFAULT_VERSION = "59.0"
TIMEOUT_S = 60.0


def build_sf(session_id: str, instance: str, http: requests.Session | None, version: str) -> Salesforce:
    return Salesforce(session_id=session_id, instance=instance, session=http, version=version)


def _more(url: str, timeout: float, sf: Salesforce) -> Any:
    return sf.query_more(url, identifier_is_url=True, timeout=timeout)


class Pages:
    """Pages of records as the server batches them; `total_size` is the query's totalSize (what a
    `SELECT COUNT()` answers), known once the first page has arrived."""

    def __init__(self, first: dict[str, Any], more: Callable[[str], dict[str, Any]]) -> None:
        self.total_size = int(first.get("totalSize") or 0)
        self._page: dict[str, Any] | None = first
        self._next_url: str | None = None
        self._more = more

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        return self

    def __next__(self) -> list[dict[str, Any]]:
        if self._page is None and self._next_url is not None:
            self._page = self._more(self._next_url)  # lazily: only when the caller wants the page
        page, self._page = self._page, None
        if page is None:
            raise StopIteration
        following = None if page.get("done", True) else page.get("nextRecordsUrl")
        self._next_url = str(following) if following else None
        return list(page["records"])


COMPOSITE_QUERY_MAX = 5  # Salesforce allows at most 5 query subrequests in one /composite call


@dataclass(frozen=True)
class Soql:
    """One query of a composite batch; `include_deleted` sends it to queryAll."""

    soql: str
    include_deleted: bool = False


class SalesforceClient:
    """Every REST call of the connector goes through `call` (or `raw` when the caller wants to
    inspect a specific failure such as 412 itself)."""

    def __init__(self, sf: Salesforce | None, relogin: Relogin | None = None, *, version: str = DEFAULT_VERSION,
                 timeout: float = TIMEOUT_S, http: requests.Session | None = None) -> None:
        if sf is None and relogin is None:
            raise ValueError("a Salesforce client needs a session or a way to log in")
        self._sf = sf
        self.relogin = relogin
        self.version = version
        self.timeout = timeout
        self.calls = 0  # REST calls made through this client (logins excluded)
        self._usage: tuple[int, int] | None = None  # see api_usage
        self._http = http
        self._login_lock = threading.Lock()  # the poll and the dispatcher share one client
        self.on_login: Callable[[str], None] | None = None  # told the instance URL after a deferred login

    @property
    def logged_in(self) -> bool:
        return self._sf is not None

    @property
    def sf(self) -> Salesforce:
        """The session; a client made with `sf=None` logs in here, at its first use (and at each use
        until a login succeeds): a Salesforce that is down when the sidecar starts must not keep
        the webhook receivers down, and the jobs' backoff paces the retries."""
        if self._sf is None:
            with self._login_lock:
                if self._sf is None:
                    assert self.relogin is not None  # checked in __init__
                    session_id, instance = self.relogin()
                    self._sf = build_sf(session_id, instance, self._http, self.version)
                    if self.on_login is not None:
                        self.on_login(self.instance_url)
        return self._sf

    @sf.setter
    def sf(self, value: Salesforce) -> None:
        self._sf = value

    @property
    def instance_url(self) -> str:
        return f"https://{self.sf.sf_instance}"

    def raw(self, operation: Callable[[Salesforce], T]) -> T:
        """Run `operation`; on an expired session renew once (when we can) and run it again."""
        try:
            return self._run(operation)
        except SalesforceExpiredSession:
            if self.relogin is None:
                raise
            log.info("salesforce session expired; logging in again")
        session_id, instance = self.relogin()
        self.sf = build_sf(session_id, instance, self.sf.session, self.version)
        return self._run(operation)

    def _run(self, operation: Callable[[Salesforce], T]) -> T:
        self.calls += 1
        try:
            result = operation(self.sf)
        except SalesforceError as exc:
            if self._usage is not None and is_daily_limit(exc):
                # Refused for the day: the allowance is spent. A concurrency refusal says nothing
                # about the daily usage, so it must not slow polling (errors.py).
                self._usage = (max(self._usage), self._usage[1])
            METERS.api_call("salesforce", self._usage)
            raise
        # simple-salesforce parses Sforce-Limit-Info of successful responses only, into the
        # Salesforce object, which a relogin replaces: keep the last value seen here.
        usage = self.sf.api_usage.get("api-usage")
        if usage is not None:
            self._usage = (int(usage.used), int(usage.total))
        METERS.api_call("salesforce", self._usage)
        return result

    def call(self, operation: Callable[[Salesforce], T]) -> T:
        try:
            return self.raw(operation)
        except (SalesforceError, requests.RequestException) as exc:
            raise translate(exc) from exc

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """`path` is relative to /services/data/vXX.X/, e.g. "sobjects/Task"."""
        return self.call(lambda sf: sf.restful(path, method=method, timeout=self.timeout, **kwargs))

    def query_pages(self, soql: str, *, include_deleted: bool = False) -> Pages:
        """Pages of records as the server batches them (query, then queryMore via nextRecordsUrl)."""
        page = self.call(lambda sf: sf.query(soql, include_deleted=include_deleted, timeout=self.timeout))
        return self.follow(page)

    def follow(self, page: dict[str, Any]) -> Pages:
        """This page's records, then the next pages fetched lazily with queryMore."""
        return Pages(page, lambda url: self.call(partial(_more, url, self.timeout)))

    def query_batch(self, batch: Sequence[Soql]) -> list[Pages]:
        """Up to five queries in ONE API call (the Composite resource), run in the order given.

        Each result pages on like `query_pages`: its first page came with the composite call, the
        rest are fetched lazily with queryMore. A failed subrequest raises (here, for the whole batch)
        the same Transient- or PermanentError as the query would have raised on its own.
        """
        if not 1 <= len(batch) <= COMPOSITE_QUERY_MAX:
            raise ValueError(f"a composite batch holds 1 to {COMPOSITE_QUERY_MAX} queries, got {len(batch)}")
        base = f"/services/data/v{self.version}"
        body = {
            "allOrNone": False,  # queries change nothing: there is nothing to roll back
            "collateSubrequests": False,  # keep the order; the reader relies on it (see reader.py)
            "compositeRequest": [
                {"method": "GET", "referenceId": f"q{index}",
                 "url": f"{base}/{'queryAll' if q.include_deleted else 'query'}?{urlencode({'q': q.soql})}"}
                for index, q in enumerate(batch)],
        }
        answer = self.rest("POST", "composite", json=body)
        results = {str(r.get("referenceId")): r for r in (answer or {}).get("compositeResponse", [])}
        return [self._subresult(results.get(f"q{index}"), f"{base}/composite#q{index}")
                for index in range(len(batch))]

    def _subresult(self, result: dict[str, Any] | None, url: str) -> Pages:
        if result is None:
            raise translate(SalesforceGeneralError(url, 500, "composite", b"subrequest result missing"))
        status = int(result.get("httpStatusCode") or 0)
        if status >= 300:
            # The subrequest's body is the usual error list: translate it as if the query had
            # failed on its own, so callers see one error mapping whichever way they read.
            error_body: Any = result.get("body")  # the JSON error list, where simple-salesforce puts bytes
            raise translate(SalesforceGeneralError(url, status, "composite", error_body))
        return self.follow(result["body"])

    def query_all(self, soql: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return [row for page in self.query_pages(soql, include_deleted=include_deleted) for row in page]

    def describe_fields(self, sobject: str) -> set[str]:
        described = self.rest("GET", f"sobjects/{sobject}/describe")
        return {str(f["name"]) for f in described.get("fields", [])}

    def api_usage(self) -> tuple[int, int] | None:
        """(used, daily limit) from the last Sforce-Limit-Info seen (kept across a relogin), if any;
        after a 403 "TotalRequests Limit exceeded", used is at least the limit."""
        return self._usage
