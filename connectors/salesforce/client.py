"""One authenticated Salesforce connection: session renewal, paging, error translation.

simple-salesforce retries an expired session up to three times itself, and its SFType helper
does so without a bound. We log in ourselves (auth.py) and hand simple-salesforce a bare session,
so the renewal policy lives here, once: renew one time, then report a PermanentError that says
how to fix the credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

from connectors.salesforce.errors import translate

log = logging.getLogger(__name__)
T = TypeVar("T")
Relogin = Callable[[], tuple[str, str]]  # -> (session id, instance host[:port])
DEFAULT_VERSION = "59.0"
TIMEOUT_S = 60.0


def build_sf(session_id: str, instance: str, http: requests.Session | None, version: str) -> Salesforce:
    return Salesforce(session_id=session_id, instance=instance, session=http, version=version)


def _more(url: str, timeout: float, sf: Salesforce) -> Any:
    return sf.query_more(url, identifier_is_url=True, timeout=timeout)


class SalesforceClient:
    """Every REST call of the connector goes through `call` (or `raw` when the caller wants to
    inspect a specific failure such as 412 itself)."""

    def __init__(self, sf: Salesforce, relogin: Relogin | None = None, *, version: str = DEFAULT_VERSION,
                 timeout: float = TIMEOUT_S) -> None:
        self.sf = sf
        self.relogin = relogin
        self.version = version
        self.timeout = timeout
        self.calls = 0  # REST calls made through this client (logins excluded)

    @property
    def instance_url(self) -> str:
        return f"https://{self.sf.sf_instance}"

    def raw(self, operation: Callable[[Salesforce], T]) -> T:
        """Run `operation`; on an expired session renew once (when we can) and run it again."""
        try:
            self.calls += 1
            return operation(self.sf)
        except SalesforceExpiredSession:
            if self.relogin is None:
                raise
            log.info("salesforce session expired; logging in again")
        session_id, instance = self.relogin()
        self.sf = build_sf(session_id, instance, self.sf.session, self.version)
        self.calls += 1
        return operation(self.sf)

    def call(self, operation: Callable[[Salesforce], T]) -> T:
        try:
            return self.raw(operation)
        except (SalesforceError, requests.RequestException) as exc:
            raise translate(exc) from exc

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """`path` is relative to /services/data/vXX.X/, e.g. "sobjects/Task"."""
        return self.call(lambda sf: sf.restful(path, method=method, timeout=self.timeout, **kwargs))

    def query_pages(self, soql: str, *, include_deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Pages of records as the server batches them (query, then queryMore via nextRecordsUrl)."""
        page = self.call(lambda sf: sf.query(soql, include_deleted=include_deleted, timeout=self.timeout))
        while True:
            yield list(page["records"])
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            page = self.call(partial(_more, str(page["nextRecordsUrl"]), self.timeout))

    def query_all(self, soql: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return [row for page in self.query_pages(soql, include_deleted=include_deleted) for row in page]

    def describe_fields(self, sobject: str) -> set[str]:
        described = self.rest("GET", f"sobjects/{sobject}/describe")
        return {str(f["name"]) for f in described.get("fields", [])}

    def api_usage(self) -> tuple[int, int] | None:
        """(used, daily limit) from the last response's Sforce-Limit-Info, if any was seen."""
        usage = self.sf.api_usage.get("api-usage")
        return None if usage is None else (int(usage.used), int(usage.total))
