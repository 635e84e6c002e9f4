"""A loopback Salesforce REST API that the unmodified simple-salesforce client can talk to.

Serve it over TLS (see tls.py): simple-salesforce only builds https:// URLs. It covers what the
sidecar uses: logins, SOQL query/queryMore/queryAll, sObject CRUD with If-Unmodified-Since,
describe, limits, composite sobjects (create, update, upsert by External ID), `/composite`
(subrequests), Bulk API 2.0 query jobs, LeadHistory, the `Sforce-Limit-Info` header and the daily
request limit, and Workflow Outbound Messages. Everything else answers 404 NOT_FOUND, like an
endpoint the org does not have.
"""

from __future__ import annotations

import copy
import json
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from connectors.emulators.http import Emulator, Request, Response
from connectors.emulators.salesforce_bulk import BulkError, BulkQueryJobs
from connectors.emulators.salesforce_composite import (
    COMPOSITE_MAX,
    UPSERT_MIN_VERSION,
    CompositeError,
    parse_composite,
    run_composite,
    run_composite_request,
    run_upsert,
)
from connectors.emulators.salesforce_login import Credentials, LoginDirectory
from connectors.emulators.salesforce_outbound import OutboundQueue, Trigger
from connectors.emulators.salesforce_store import OrgStore, RecordError, object_summary
from connectors.emulators.soql import SoqlError, bind, parse_sf_datetime, to_18

__all__ = ["RecordError", "SalesforceEmulator"]

_V = r"/services/data/v(?P<version>\d+\.\d+)"
_MAX_OPEN_CURSORS = 100


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, [{"message": message, "errorCode": code}], headers or {})


def _attributed(sobject: str, version: str, record_id: str, row: dict[str, Any]) -> dict[str, Any]:
    url = f"/services/data/v{version}/sobjects/{sobject}/{record_id}"
    return {"attributes": {"type": sobject, "url": url}, **row}


@dataclass
class _Cursor:
    records: list[dict[str, Any]]
    batch: int
    endpoint: str  # query or queryAll; the nextRecordsUrl keeps it


class SalesforceEmulator(Emulator):
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
        self.org_id = to_18("00DHp0000000001")
        self.store = OrgStore(self.clock)
        self.logins = LoginDirectory(self.org_id, self.clock, self._is_active, rng=random.Random(seed))
        self.outbound = OutboundQueue(self.clock, api_version=api_version, session_id=self._outbound_session)
        self.store.listeners.append(self.outbound.on_change)
        self.bulk = BulkQueryJobs(self.store)
        self._cursors: dict[str, _Cursor] = {}
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
                return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if self.api_calls_used >= self.daily_limit:
                response = _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
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
            response = _error(exc.status, exc.code, exc.message)
        except SoqlError as exc:
            response = _error(400, exc.code, exc.message)
        except RecordError as exc:
            response = Response(400, [exc.as_dict()])
        # The shared router's own misses (dict bodies): render them as Salesforce does.
        if response.status == 404 and isinstance(response.body, dict):
            response = _error(404, "NOT_FOUND", "The requested resource does not exist")
        elif response.status == 405 and isinstance(response.body, dict):
            message = f"HTTP Method '{request.method}' not allowed"
            response = _error(405, "METHOD_NOT_ALLOWED", message)
        return response

    def fault_response(self, kind: str, request: Request) -> Response:
        data = request.path.startswith("/services/data")
        headers = {"Sforce-Limit-Info": self._limit_info()} if data else {}
        if kind == "expired_session":
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid", headers)
        if kind == "rate_limit":
            return _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", headers)
        if kind == "server_error":
            return _error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable", headers)
        return _error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId "
                      "if you contact support: 1234567890-12345 (-1234567890)", headers)

    def _limit_info(self) -> str:
        return f"api-usage={self.api_calls_used}/{self.daily_limit}"

    def _is_active(self, user_id: str) -> bool:
        user = self.store.get("User", user_id)
        return bool(user and user["IsActive"])

    def _outbound_session(self) -> str | None:
        # Real orgs include a session id only when the outbound message is set up to send one.
        return self.logins.issue(self.integration_user_id) if self.outbound_sends_session else None

    def _sobject(self, name: str | None, status: int = 404) -> str:
        canonical = {n.lower(): n for n in self.store.schemas}.get((name or "").lower())
        if canonical is None:
            raise ApiError(status, "NOT_FOUND", "The requested resource does not exist")
        return canonical

    def _body(self, request: Request) -> Any:
        try:
            return request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc

    # --- query ------------------------------------------------------------------------------------

    def _query(self, request: Request) -> Response:
        soql = request.arg("q")
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        bound = bind(soql, self.store.field_types())
        include_deleted = request.params["endpoint"] == "queryAll"
        rows = [r for r in self.store.tables[bound.sobject].values() if include_deleted or not r["IsDeleted"]]
        total, matched = bound.run(rows)
        if bound.query.count_only:
            return Response(200, {"totalSize": total, "done": True, "records": []})
        version = request.params["version"]
        records = [_attributed(bound.sobject, version, row["Id"], bound.project(row)) for row in matched]
        batch = self.query_batch_size
        options = request.headers.get("sforce-query-options", "")
        if options.replace(" ", "").lower().startswith("batchsize="):
            requested = options.split("=", 1)[1].strip()
            if not requested.isdigit():
                raise ApiError(400, "INVALID_HEADER_TYPE", f"Invalid Sforce-Query-Options: {options}")
            batch = min(max(int(requested), 200), 2000)  # the range Salesforce honours
        locator = to_18(f"01gHp{next(self._cursor_numbers):010d}")
        if len(self._cursors) >= _MAX_OPEN_CURSORS:  # abandoned cursors expire; drop the oldest
            del self._cursors[next(iter(self._cursors))]
        self._cursors[locator] = _Cursor(records, batch, request.params["endpoint"])
        return self._page(locator, 0, version)

    def _query_more(self, request: Request) -> Response:
        if request.params["locator"] not in self._cursors:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(request.params["locator"], int(request.params["offset"]), request.params["version"])

    def _page(self, locator: str, offset: int, version: str) -> Response:
        cursor = self._cursors[locator]
        end = offset + cursor.batch
        body: dict[str, Any] = {"totalSize": len(cursor.records), "done": end >= len(cursor.records),
                                "records": cursor.records[offset:end]}
        if body["done"]:
            del self._cursors[locator]  # a finished locator is gone, as in a real org
        else:
            body["nextRecordsUrl"] = f"/services/data/v{version}/{cursor.endpoint}/{locator}-{end}"
        return Response(200, body)

    # --- sObject rows -----------------------------------------------------------------------------

    def _record(self, request: Request) -> tuple[str, dict[str, Any]]:
        sobject = self._sobject(request.params["sobject"])
        record_id = request.params["id"]
        record = self.store.get(sobject, record_id, include_deleted=True)
        if record is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if record["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return sobject, record

    def _read(self, request: Request) -> Response:
        sobject, record = self._record(request)
        fields = request.arg("fields")
        row = dict(record)
        if fields:
            names = {n.lower(): n for n in record}
            row = {names[f.strip().lower()]: record[names[f.strip().lower()]]
                   for f in fields.split(",") if f.strip().lower() in names}
            row.setdefault("Id", record["Id"])
        return Response(200, _attributed(sobject, request.params["version"], record["Id"], row))

    def _check_unmodified(self, request: Request, record: dict[str, Any]) -> None:
        header = request.headers.get("if-unmodified-since")
        if not header or "LastModifiedDate" not in record:
            return
        try:
            since = parsedate_to_datetime(header)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "INVALID_HEADER_TYPE", f"Invalid If-Unmodified-Since: {header}") from exc
        # HTTP dates have one-second resolution; a change within that second is not "after" it.
        modified = parse_sf_datetime(record["LastModifiedDate"]).replace(microsecond=0)
        if modified > since:
            raise ApiError(412, "PRECONDITION_FAILED",
                           f"The requested resource has been modified since {header}")

    def _create(self, request: Request) -> Response:
        sobject = self._sobject(request.params["sobject"])
        if sobject == "LeadHistory":
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", "entity type cannot be inserted: Lead History")
        clean = self.store.validate(sobject, self._body(request), creating=True)
        record_id = self.store.apply_create(sobject, clean, self._actor)
        return Response(201, {"id": record_id, "success": True, "errors": []})

    def _update(self, request: Request) -> Response:
        sobject, record = self._record(request)
        self._check_unmodified(request, record)
        clean = self.store.validate(sobject, self._body(request), creating=False, record_id=record["Id"])
        self.store.apply_update(sobject, record["Id"], clean, self._actor)
        return Response(204, None)

    def _delete(self, request: Request) -> Response:
        sobject, record = self._record(request)
        self._check_unmodified(request, record)
        self.store.apply_delete(sobject, record["Id"], self._actor)
        return Response(204, None)

    def _composite_records(self, request: Request) -> tuple[list[Any], bool]:
        body = self._body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records is required")
        if len(records) > COMPOSITE_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than "
                           f"{COMPOSITE_MAX} records into this call")
        return records, bool(body.get("allOrNone"))

    def _composite(self, request: Request, *, creating: bool) -> Response:
        records, all_or_none = self._composite_records(request)
        return Response(200, run_composite(self.store, records, all_or_none=all_or_none, creating=creating,
                                           actor=self._actor))

    def _upsert(self, request: Request) -> Response:
        major, minor = (int(part) for part in request.params["version"].split("."))
        if (major, minor) < UPSERT_MIN_VERSION:  # the resource does not exist before 46.0
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        sobject = self._sobject(request.params["sobject"])
        wanted = request.params["field"]
        field = {n.lower(): n for n in self.store.schemas[sobject]}.get(wanted.lower())
        if field is None:  # a real org's answer for an unknown (or hidden) key field
            raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: "
                           f"{wanted}")
        if not self.store.schemas[sobject][field].external_id:  # our approximation of the code
            raise ApiError(400, "INVALID_FIELD", f"Field name provided, {field} is not an External ID or indexed "
                           f"field for {sobject}")
        records, all_or_none = self._composite_records(request)
        return Response(200, run_upsert(self.store, sobject, field, records, all_or_none=all_or_none,
                                        actor=self._actor))

    def _composite_request(self, request: Request) -> Response:
        try:
            subrequests, all_or_none = parse_composite(self._body(request))
        except CompositeError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        # Rolling back means restoring the records; only worth copying when something may write.
        writes = all_or_none and any(s.method != "GET" for s in subrequests)
        saved = copy.deepcopy(self.store.tables) if writes else None

        def rollback() -> None:
            if saved is not None:
                self.store.tables = saved

        return Response(200, {"compositeResponse": run_composite_request(
            subrequests, all_or_none=all_or_none, call=self._subrequest, rollback=rollback)})

    def _subrequest(self, method: str, url: str, headers: dict[str, str], body: Any) -> Response:
        parts = urlsplit(url)
        encoded = b"" if body is None else json.dumps(body).encode()
        sub = Request(method.upper(), parts.path, parse_qs(parts.query, keep_blank_values=True),
                      {**headers, "content-type": "application/json"}, encoded)
        # Faults injected for a subrequest's own path fail that subrequest alone, as a real one can.
        fault = self.faults.draw(parts.path)
        if fault is not None and fault.kind not in ("latency", "timeout", "drop"):
            response = self.fault_response(fault.kind, sub)
            response.headers.pop("Sforce-Limit-Info", None)
            return response
        return self._dispatch(sub)

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

    # --- helpers for tests and the demo (no HTTP, no API usage) -------------------------------------

    def add_user(self, first_name: str, last_name: str, *, username: str | None = None,
                 email: str | None = None, is_active: bool = True, password: str | None = None,
                 security_token: str = "", **fields: Any) -> str:
        with self.lock:
            username = username or f"{first_name}.{last_name}@example.com".lower()
            values = {"FirstName": first_name, "LastName": last_name, "Username": username,
                      "Email": email or username, "IsActive": is_active, **fields}
            clean = self.store.validate("User", values, creating=True, system=True)
            user_id = self.store.apply_create("User", clean, self.integration_user_id)
            if password is not None:
                self.logins.credentials[username] = Credentials(password, security_token, user_id)
            return user_id

    def add_queue(self, name: str, *, developer_name: str | None = None, email: str | None = None) -> str:
        with self.lock:
            values = {"Name": name, "DeveloperName": developer_name or name.replace(" ", "_"),
                      "Type": "Queue", "Email": email}
            clean = self.store.validate("Group", values, creating=True, system=True)
            return self.store.apply_create("Group", clean, self.integration_user_id)

    def add_connected_app(self, client_id: str, client_secret: str) -> None:
        with self.lock:
            self.logins.apps[client_id] = client_secret

    def add_field(self, sobject: str, name: str, ftype: str, *, external_id: bool = False,
                  unique: bool = False) -> None:
        """A custom field, optionally an External ID (can key an upsert) and/or Unique."""
        with self.lock:
            self.store.add_field(sobject, name, ftype, external_id=external_id, unique=unique)

    def issue_token(self, user_id: str | None = None) -> str:
        with self.lock:
            return self.logins.issue(user_id or self.integration_user_id)

    def expire_sessions(self) -> None:
        with self.lock:
            self.logins.tokens.clear()

    def insert(self, sobject: str, fields: dict[str, Any], *, actor: str | None = None) -> str:
        """Create a record in system mode: read-only fields such as CreatedDate may be backdated."""
        with self.lock:
            clean = self.store.validate(sobject, fields, creating=True, system=True)
            return self.store.apply_create(sobject, clean, actor or self.integration_user_id)

    def insert_uncommitted(self, sobject: str, fields: dict[str, Any], *, actor: str | None = None) -> str:
        """Fault: a row written inside a long transaction. It is stamped now (SystemModstamp is set
        at write time) but no query, read or Bulk job sees it until `commit_pending()`, which may
        come after polls have moved their cursors past its stamp."""
        with self.lock:
            listeners, self.store.listeners = self.store.listeners, []  # notified on commit
            try:
                record_id = self.insert(sobject, fields, actor=actor)
            finally:
                self.store.listeners = listeners
            self.uncommitted.append((sobject, self.store.tables[sobject].pop(record_id)))
            return record_id

    def commit_pending(self) -> list[str]:
        """Make the rows of `insert_uncommitted` visible, with the stamps they were written with."""
        with self.lock:
            done = []
            for sobject, record in self.uncommitted:
                self.store.tables[sobject][record["Id"]] = record
                self.store.notify(sobject, None, record)
                done.append(str(record["Id"]))
            self.uncommitted.clear()
            return done

    def add_task_status(self, status: str, *, closed: bool) -> None:
        """A Task Status picklist value; `closed` ones set IsClosed like Completed does."""
        with self.lock:
            if closed:
                self.store.closed_task_statuses.add(status)
            else:
                self.store.closed_task_statuses.discard(status)

    def update_as_user(self, sobject: str, record_id: str, fields: dict[str, Any],
                       user_id: str | None = None) -> None:
        """An edit by a person in the UI: LastModifiedDate, SystemModstamp and history all move."""
        with self.lock:
            clean = self.store.validate(sobject, fields, creating=False, record_id=record_id)
            self.store.apply_update(sobject, record_id, clean, user_id or self.integration_user_id)

    def system_update(self, sobject: str, record_id: str, fields: dict[str, Any] | None = None) -> None:
        """A change by automation: only SystemModstamp moves."""
        with self.lock:
            clean = self.store.validate(sobject, fields or {}, creating=False, system=True, record_id=record_id)
            self.store.apply_update(sobject, record_id, clean, self.integration_user_id, user_change=False)

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            record = self.store.get(sobject, record_id, include_deleted=True)
            return dict(record) if record is not None else None

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.store.tables[sobject].values()
            return [dict(r) for r in rows if include_deleted or not r["IsDeleted"]]

    def export(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            names = ("Lead", "Task", "Event", "LeadHistory")
            return {name: self.records(name, include_deleted=True) for name in names}

    @property
    def api_usage(self) -> tuple[int, int]:
        return self.api_calls_used, self.daily_limit

    def set_daily_limit(self, limit: int) -> None:
        with self.lock:
            self.daily_limit = limit

    def reset_api_usage(self) -> None:
        with self.lock:
            self.api_calls_used = 0

    def configure_outbound(self, url: str, org_id: str | None = None, fields: list[str] | None = None,
                           trigger: Trigger | str = "on lead change") -> None:
        with self.lock:
            chosen = fields or ["Id", "OwnerId", "Status"]
            self.outbound.configure(url, org_id or self.org_id, chosen, trigger)

    def deliver_outbound(self, session: requests.Session | None = None) -> int:
        # Not under the lock: the listener may call back into this emulator while we wait for it.
        return self.outbound.deliver(session)

    def pending_outbound(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.outbound.describe_pending()
