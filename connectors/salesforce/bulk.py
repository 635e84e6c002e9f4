"""Bulk API 2.0 query jobs: create a job, poll its state, download the CSV result sets.

Why not simple-salesforce's `bulk2` helper: it sleeps with `time.sleep` of its own and writes files;
we need an injectable sleep (tests and virtual time), our error translation and our call counter.

Every request is one API call: create (1), one status poll per wait (at least one: a job is never
complete when created), one per result set of `max_records` rows. Result sets come back in no
particular order and as CSV text; `typed_rows` turns them into the shapes the REST API returns so
that one mapping serves both (see backfill.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import requests
from simple_salesforce.api import Salesforce

from connectors.salesforce.client import SalesforceClient
from sidecar.ports import PermanentError, TransientError

Row = dict[str, Any]
Sleep = Callable[[float], None]
MAX_RECORDS = 50_000  # rows per result set: bounds one response's size, 2 sets for 100k leads
FIRST_WAIT_S = 2.0
MAX_WAIT_S = 30.0
MAX_POLLS = 600  # with the back-off, about five hours before we call the job stuck


def create_job(client: SalesforceClient, soql: str, *, include_deleted: bool = False) -> str:
    body = {"operation": "queryAll" if include_deleted else "query", "query": soql,
            "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}
    job = client.rest("POST", "jobs/query", json=body)
    return str(job["id"])


def wait_for_job(client: SalesforceClient, job_id: str, sleep: Sleep, *, first_wait: float = FIRST_WAIT_S,
                 max_wait: float = MAX_WAIT_S, max_polls: int = MAX_POLLS) -> dict[str, Any]:
    """Poll until JobComplete; waits before each poll (a fresh job is never complete), doubling."""
    wait = first_wait
    for _ in range(max_polls):
        sleep(wait)
        info: dict[str, Any] = client.rest("GET", f"jobs/query/{job_id}")
        state = info.get("state")
        if state == "JobComplete":
            return info
        if state == "Failed":  # e.g. a query timeout: a later attempt may well pass
            raise TransientError(f"Salesforce Bulk API query job {job_id} failed: {info.get('errorMessage')}")
        if state == "Aborted":
            raise PermanentError(f"Salesforce Bulk API query job {job_id} was aborted (Setup > Bulk Data Load "
                                 "Jobs); start the backfill again")
        wait = min(wait * 2, max_wait)
    raise TransientError(f"Salesforce Bulk API query job {job_id} is still running after {max_polls} polls")


def _get_results(path: str, params: dict[str, str | int], timeout: float, sf: Salesforce) -> requests.Response:
    # restful() would parse JSON; results are CSV, so take the raw response (errors still raise).
    return sf._call_salesforce("GET", sf.base_url + path, name=path, params=params,
                               headers={"Accept": "text/csv"}, timeout=timeout)


def job_results(client: SalesforceClient, job_id: str, *, max_records: int = MAX_RECORDS) -> Iterator[list[Row]]:
    """Each result set as rows of strings (None for empty values), following Sforce-Locator."""
    locator = ""
    while True:
        params: dict[str, str | int] = {"maxRecords": max_records}
        if locator:
            params["locator"] = locator
        path = f"jobs/query/{job_id}/results"
        response = client.call(partial(_get_results, path, params, client.timeout))
        reader = csv.reader(io.StringIO(response.content.decode("utf-8")))
        header = next(reader, [])  # every result set starts with the header row
        yield [{name: value if value != "" else None for name, value in zip(header, row, strict=True)}
               for row in reader]
        locator = response.headers.get("Sforce-Locator", "null")
        if not locator or locator == "null":  # the string "null" marks the last set
            return


def bulk_rows(client: SalesforceClient, soql: str, sleep: Sleep, *, include_deleted: bool = False,
              max_records: int = MAX_RECORDS) -> Iterator[list[Row]]:
    """Create, wait for and download one query job."""
    job_id = create_job(client, soql, include_deleted=include_deleted)
    wait_for_job(client, job_id, sleep)
    return job_results(client, job_id, max_records=max_records)


def rest_datetime(value: str | None) -> str | None:
    # Bulk writes `...000Z`, REST `...000+0000`: cursors hold "Id@stamp" keys, which must match.
    return value[:-1] + "+0000" if value and value.endswith("Z") else value


def typed_rows(rows: Iterable[Row], *, booleans: Iterable[str] = (), numbers: Iterable[str] = (),
               datetimes: Iterable[str] = ()) -> list[Row]:
    """CSV strings as the REST API types them: booleans, numbers and REST-rendered datetimes."""
    flags, amounts, stamps = set(booleans), set(numbers), set(datetimes)
    typed: list[Row] = []
    for row in rows:
        for name in flags & row.keys():
            row[name] = None if row[name] is None else row[name] == "true"
        for name in amounts & row.keys():
            row[name] = None if row[name] is None else float(row[name])
        for name in stamps & row.keys():
            row[name] = rest_datetime(row[name])
        typed.append(row)
    return typed
