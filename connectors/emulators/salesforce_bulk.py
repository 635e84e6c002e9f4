"""Bulk API 2.0 query jobs: create, poll the job's state, download the results as CSV in locator sets.

What the emulator reproduces, because clients get it wrong otherwise:
- a job is never complete when created (`UploadComplete`); its state advances only when someone asks
  for it: the first status request starts processing (the query's snapshot is taken then) and the
  job reports `JobComplete` on the `polls_to_complete`-th status request. A counter, not wall time,
  so tests need no sleeps and still prove the client polls;
- results are CSV, every value quoted, the header on every set; null as an empty value, booleans
  `true`/`false`, datetimes `2026-11-25T08:00:00.000Z` (not the REST API's `+0000`), numbers of double
  fields with a fraction (`23.0`); rows come in record-id order, not in any ORDER BY of the REST API;
- `maxRecords` caps a set; `Sforce-Locator` names the next one (base64 of its offset, as Salesforce's
  opaque `MTAwMDA` strings are) and is the string `null` after the last; `Sforce-NumberOfRecords`
  counts the rows of this set; results need the API version that created the job (409 otherwise);
- aggregate queries (COUNT()) and OFFSET are refused as Bulk API 2.0 refuses them. The error codes for
  those refusals and for bad locators are our approximation; the documented statuses are kept.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from dataclasses import dataclass, field
from typing import Any

from connectors.emulators.http import Request, Response
from connectors.emulators.salesforce_store import OrgStore
from connectors.emulators.soql import bind, to_18

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DOUBLE_TYPES = frozenset({"double", "currency", "percent"})


class BulkError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def csv_value(ftype: str, value: Any) -> str:
    """One value as Bulk API 2.0 writes it into result CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if ftype == "datetime":
        return str(value).replace("+0000", "Z")
    if ftype in DOUBLE_TYPES:
        return repr(float(value))
    return str(value)


@dataclass
class QueryJob:
    id: str
    operation: str
    soql: str
    sobject: str
    version: str
    created_by: str
    created_at: str
    delimiter: str = "COMMA"
    line_ending: str = "LF"
    state: str = "UploadComplete"
    polls: int = 0
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "operation": self.operation, "object": self.sobject,
                "createdById": self.created_by, "createdDate": self.created_at,
                "systemModstamp": self.created_at, "state": self.state, "concurrencyMode": "Parallel",
                "contentType": "CSV", "apiVersion": float(self.version), "jobType": "V2Query",
                "lineEnding": self.line_ending, "columnDelimiter": self.delimiter,
                "numberRecordsProcessed": len(self.rows) if self.state == "JobComplete" else 0,
                "retries": 0, "totalProcessingTime": 0}


class BulkQueryJobs:
    def __init__(self, store: OrgStore, *, polls_to_complete: int = 2, default_max_records: int = 50_000) -> None:
        self.store = store
        self.polls_to_complete = polls_to_complete
        # Salesforce sizes an unbounded set by bytes; a fixed row count is our stand-in.
        self.default_max_records = default_max_records
        self.jobs: dict[str, QueryJob] = {}
        self._numbers = iter(range(1, 10**9))

    def create(self, request: Request, actor: str, body: Any) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise BulkError(400, "INVALIDJOB", "query is required")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        delimiter, line_ending = body.get("columnDelimiter", "COMMA"), body.get("lineEnding", "LF")
        if delimiter not in DELIMITERS or line_ending not in LINE_ENDINGS or body.get("contentType", "CSV") != "CSV":
            raise BulkError(400, "INVALIDJOB", "contentType must be CSV; check columnDelimiter and lineEnding")
        bound = bind(body["query"], self.store.field_types())  # a bad query fails at creation, as SOQL errors
        if bound.query.count_only or bound.query.offset:
            raise BulkError(400, "INVALIDJOB", "Bulk API 2.0 does not support aggregate functions or OFFSET")
        job = QueryJob(to_18(f"750Hp{next(self._numbers):010d}"), operation, body["query"], bound.sobject,
                       request.params["version"], actor, self.store.now(), delimiter, line_ending)
        self.jobs[job.id] = job
        return Response(200, job.info())

    def _job(self, request: Request) -> QueryJob:
        job = self.jobs.get(request.params["job"])
        if job is None:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def status(self, request: Request) -> Response:
        job = self._job(request)
        if job.state in ("UploadComplete", "InProgress"):
            job.polls += 1
            if job.polls == 1:
                self._run(job)  # processing starts: the query sees the org as it is now
            job.state = "JobComplete" if job.polls >= self.polls_to_complete else "InProgress"
        return Response(200, job.info())

    def _run(self, job: QueryJob) -> None:
        bound = bind(job.soql, self.store.field_types())
        deleted = job.operation == "queryAll"
        rows = [r for r in self.store.tables[bound.sobject].values() if deleted or not r["IsDeleted"]]
        _, matched = bound.run(rows)
        job.header = list(bound.select)
        job.rows = [[csv_value(bound.types[name], row.get(name)) for name in bound.select] for row in matched]

    def results(self, request: Request) -> Response:
        job = self._job(request)
        if request.params["version"] != job.version:
            raise BulkError(409, "INVALIDJOB", "Use the API version that created the job to get its results")
        if job.state != "JobComplete":
            raise BulkError(412, "JOB_NOT_COMPLETE", "can only download query results of successfully "
                            f"completed bulk job with status: JOB_COMPLETE. Current status: {job.state}")
        offset = _offset(request.arg("locator"))
        raw_max = request.arg("maxRecords")
        if raw_max is not None and (not raw_max.isdigit() or int(raw_max) < 1):
            raise BulkError(400, "INVALID_QUERY_PARAMETER", f"maxRecords must be a positive integer: {raw_max}")
        end = offset + (int(raw_max) if raw_max else self.default_max_records)
        chunk = job.rows[offset:end]
        out = io.StringIO()
        writer = csv.writer(out, delimiter=DELIMITERS[job.delimiter], quoting=csv.QUOTE_ALL,
                            lineterminator=LINE_ENDINGS[job.line_ending])
        writer.writerow(job.header)
        writer.writerows(chunk)
        more = end < len(job.rows)
        locator = base64.b64encode(str(end).encode()).decode().rstrip("=") if more else "null"
        return Response(200, out.getvalue(), {"Sforce-Locator": locator,
                                              "Sforce-NumberOfRecords": str(len(chunk))}, "text/csv")


def _offset(locator: str | None) -> int:
    if not locator:
        return 0
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit():
        raise BulkError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
    return int(text)

