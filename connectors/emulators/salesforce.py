"""A loopback Salesforce REST API that the unmodified simple-salesforce client can talk to.

Serve it over TLS (see tls.py): simple-salesforce only builds https:// URLs. It covers what the
sidecar uses: logins, SOQL query/queryMore/queryAll, sObject CRUD with If-Unmodified-Since,
describe, limits, composite sobjects (create, update, upsert by External ID), `/composite`
(subrequests), Bulk API 2.0 query jobs, LeadHistory, the `Sforce-Limit-Info` header and the daily
request limit, and Workflow Outbound Messages. Everything else answers 404 NOT_FOUND, like an
endpoint the org does not have.

The pieces live in siblings: `salesforce_query` (SOQL and cursors), `salesforce_records` (sObject
rows and composite), `salesforce_helpers` (seeding/inspection helpers for tests and the demo),
`salesforce_store` (data), `salesforce_login`, `salesforce_composite`, `salesforce_bulk` and
`salesforce_outbound`.
"""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connectors.emulators.http import Emulator, Request, Response
from connectors.emulators.salesforce_base import ApiError, api_error
from connectors.emulators.salesforce_bulk import BulkError, BulkQueryJobs
from connectors.emulators.salesforce_composite import COMPOSITE_MAX
from connectors.emulators.salesforce_helpers import SalesforceHelpers
from connectors.emulators.salesforce_login import LoginDirectory
from connectors.emulators.salesforce_outbound import OutboundQueue
from connectors.emulators.salesforce_query import Cursor, SalesforceQueries
from connectors.emulators.salesforce_records import SalesforceRecords
from connectors.emulators.salesforce_store import OrgStore, RecordError, object_summary
from connectors.emulators.soql import SoqlError, to_18

__all__ = ["RecordError", "SalesforceEmulator"]

_V = r"/services/data/v(?P<version>\d+\.\d+)"
# 403 REQUEST_LIMIT_EXCEEDED messages by limit, as orgs send them (developer.salesforce.com "API
# Request Limits and Allocations"; help.salesforce.com 000389067 quotes the ConcurrentRequests text).
REQUEST_LIMIT_MESSAGES = {
    "TotalRequests": "TotalRequests Limit exceeded.",
    "ConcurrentRequests": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    "ConcurrentPerOrgLongTxn": "ConcurrentPerOrgLongTxn Limit exceeded.",
}


class SalesforceEmulator(SalesforceQueries, SalesforceRecords, SalesforceHelpers, Emulator):
    service = "salesforce"
    outbound_sends_session = False

    def __init__(self, seed: int = 0, clock: Callable[[], datetime] | None = None, *,
                 api_version: str = "59.0", query_batch_size: int = 2000, daily_limit: int = 100_000) -> None:
        super().__init__(seed, clock)
        self.lock = threading.RLock()  # the server is threaded; one request or helper call at a time
        self.api_version = api_version
        self.query_batch_size = query_batch_size
        self.daily_limit = daily_limit
        self.api_calls_used = 0
        self.limit_fault = "TotalRequests"  # which REQUEST_LIMIT_EXCEEDED the rate_limit fault answers
        self.org_id = to_18("00DHp0000000001")
        self.store = OrgStore(self.clock)
        self.logins = LoginDirectory(self.org_id, self.clock, self._is_active, rng=random.Random(seed))
        self.outbound = OutboundQueue(self.clock, api_version=api_version, session_id=self._outbound_session)
        self.store.listeners.append(self.outbound.on_change)
        self.bulk = BulkQueryJobs(self.store)
        self._cursors: dict[str, Cursor] = {}
        self._cursor_numbers = iter(range(1, 10**9))
        self._actor = ""
        self.uncommitted: list[tuple[str, dict[str, Any]]] = []  # see insert_uncommitted
        self.integration_user_id = ""
        self.integration_user_id = self.add_user("Integration", "User", username="integration@example.com",
                                                 password="password", security_token="TOKEN")
        # The API user created itself: nobody else existed to be its creator.
        self.store.tables["User"][self.integration_user_id].update(
            CreatedById=self.integration_user_id, LastModifiedById=self.integration_user_id)
        self.logins.run_as = self.integration_user_id
        self.access_token = self.logins.issue(self.integration_user_id)
        self._add_routes()

    # --- plumbing ---------------------------------------------------------------------------------

    def start(self, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> str:
        url = super().start(ssl_context, port)
        self.outbound.instance_url = url
        return url

    def _add_routes(self) -> None:
        add = self.router.add
        add("POST", r"/services/oauth2/token", lambda r: self.logins.oauth_token(r, self.url))
        add("POST", r"/services/Soap/u/(?P<version>\d+\.\d+)",
            lambda r: self.logins.soap_login(r, self.url, r.params["version"]))
        add("GET", r"/services/data", self._versions)
        add("GET", _V + r"/(?P<endpoint>query|queryAll)", self._query)
        add("GET", _V + r"/(?P<endpoint>query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)",
            self._query_more)
        add("GET", _V + r"/limits", self._limits)
        add("GET", _V + r"/sobjects", self._describe_global)
        add("GET", _V + r"/sobjects/(?P<sobject>\w+)/describe", self._describe)
        add("GET", _V + r"/sobjects/(?P<sobject>\w+)", self._sobject_info)
        add("POST", _V + r"/sobjects/(?P<sobject>\w+)", self._create)
        row = _V + r"/sobjects/(?P<sobject>\w+)/(?P<id>[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?)"
        for method, handler in (("GET", self._read), ("PATCH", self._update), ("DELETE", self._delete)):
            add(method, row, handler)
        add("POST", _V + r"/composite/sobjects", lambda r: self._composite(r, creating=True))
        add("PATCH", _V + r"/composite/sobjects", lambda r: self._composite(r, creating=False))
        add("PATCH", _V + r"/composite/sobjects/(?P<sobject>\w+)/(?P<field>\w+)", self._upsert)
        add("POST", _V + r"/composite/sobjects/(?P<sobject>\w+)", self._retrieve)
        add("POST", _V + r"/composite", self._composite_request)
        add("POST", _V + r"/jobs/query", lambda r: self.bulk.create(r, self._actor, self._body(r)))
        add("GET", _V + r"/jobs/query/(?P<job>750\w+)", self.bulk.status)
        add("GET", _V + r"/jobs/query/(?P<job>750\w+)/results", self.bulk.results)

    def handle(self, request: Request) -> Response:
        with self.lock:
            if not request.path.startswith("/services/data/v"):
                return super().handle(request)
            user = self.logins.user_for(request.headers.get("authorization"))
            if user is None:
                return api_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if self.api_calls_used >= self.daily_limit:
                response = api_error(403, "REQUEST_LIMIT_EXCEEDED", REQUEST_LIMIT_MESSAGES["TotalRequests"])
            else:
                self.api_calls_used += 1  # one per HTTP request: a whole /composite call counts once
                self._actor = user
                response = self._dispatch(request)
            response.headers["Sforce-Limit-Info"] = self._limit_info()
            return response

    def _dispatch(self, request: Request) -> Response:
        """Route one authenticated request (a top-level call or a composite subrequest)."""
        try:
            response = self.router.dispatch(request)
        except (ApiError, BulkError) as exc:
            response = api_error(exc.status, exc.code, exc.message)
        except SoqlError as exc:
            response = api_error(400, exc.code, exc.message)
        except RecordError as exc:
            response = Response(400, [exc.as_dict()])
        # The shared router's own misses (dict bodies): render them as Salesforce does.
        if response.status == 404 and isinstance(response.body, dict):
            response = api_error(404, "NOT_FOUND", "The requested resource does not exist")
        elif response.status == 405 and isinstance(response.body, dict):
            message = f"HTTP Method '{request.method}' not allowed"
            response = api_error(405, "METHOD_NOT_ALLOWED", message)
        return response

    def fault_response(self, kind: str, request: Request) -> Response:
        data = request.path.startswith("/services/data")
        headers = {"Sforce-Limit-Info": self._limit_info()} if data else {}
        if kind == "expired_session":
            return api_error(401, "INVALID_SESSION_ID", "Session expired or invalid", headers)
        if kind == "rate_limit":
            message = REQUEST_LIMIT_MESSAGES[self.limit_fault]
            return api_error(403, "REQUEST_LIMIT_EXCEEDED", message, headers)
        if kind == "server_error":
            return api_error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable", headers)
        return api_error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId "
                      "if you contact support: 1234567890-12345 (-1234567890)", headers)

    def limit_next(self, n: int = 1, limit: str = "ConcurrentRequests", path_prefix: str = "") -> None:
        """The next n calls are refused with 403 REQUEST_LIMIT_EXCEEDED for `limit` (a key of
        REQUEST_LIMIT_MESSAGES); the daily limit itself is reached for real with set_api_usage."""
        if limit not in REQUEST_LIMIT_MESSAGES:
            raise ValueError(f"unknown limit {limit!r}; expected one of {sorted(REQUEST_LIMIT_MESSAGES)}")
        self.limit_fault = limit
        self.faults.add("rate_limit", next_n=n, path_prefix=path_prefix)

    def _limit_info(self) -> str:
        return f"api-usage={self.api_calls_used}/{self.daily_limit}"

    def _is_active(self, user_id: str) -> bool:
        user = self.store.get("User", user_id)
        return bool(user and user["IsActive"])

    def _outbound_session(self) -> str | None:
        # Real orgs include a session id only when the outbound message is set up to send one.
        return self.logins.issue(self.integration_user_id) if self.outbound_sends_session else None

    # --- metadata ---------------------------------------------------------------------------------

    def _versions(self, request: Request) -> Response:
        return Response(200, [{"label": "Winter '24", "url": f"/services/data/v{self.api_version}",
                               "version": self.api_version}])

    def _limits(self, request: Request) -> Response:
        remaining = self.daily_limit - self.api_calls_used
        return Response(200, {"DailyApiRequests": {"Max": self.daily_limit, "Remaining": remaining},
                              "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                              "DataStorageMB": {"Max": 5, "Remaining": 5}})

    def _describe_global(self, request: Request) -> Response:
        version = request.params["version"]
        return Response(200, {"encoding": "UTF-8", "maxBatchSize": COMPOSITE_MAX,
                              "sobjects": [object_summary(n, version) for n in self.store.schemas]})

    def _sobject_info(self, request: Request) -> Response:
        sobject = self._sobject(request.params["sobject"])
        return Response(200, {"objectDescribe": object_summary(sobject, request.params["version"]),
                              "recentItems": []})

    def _describe(self, request: Request) -> Response:
        sobject = self._sobject(request.params["sobject"])
        return Response(200, self.store.describe(sobject, request.params["version"]))
