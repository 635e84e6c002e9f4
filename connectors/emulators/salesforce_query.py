"""SOQL over REST for the Salesforce emulator: `query`/`queryAll` and the `queryMore` cursors
(nextRecordsUrl) they leave open. Mixed into `SalesforceEmulator`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from connectors.emulators.http import Request, Response
from connectors.emulators.salesforce_base import ApiError, SalesforceBase, attributed
from connectors.emulators.soql import bind, to_18

MAX_OPEN_CURSORS = 100


@dataclass
class Cursor:
    records: list[dict[str, Any]]
    batch: int
    endpoint: str  # query or queryAll; the nextRecordsUrl keeps it


class SalesforceQueries(SalesforceBase):
    # Provided by SalesforceEmulator.
    query_batch_size: int
    _cursors: dict[str, Cursor]
    _cursor_numbers: Iterator[int]

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
        records = [attributed(bound.sobject, version, row["Id"], bound.project(row)) for row in matched]
        batch = self.query_batch_size
        options = request.headers.get("sforce-query-options", "")
        if options.replace(" ", "").lower().startswith("batchsize="):
            requested = options.split("=", 1)[1].strip()
            if not requested.isdigit():
                raise ApiError(400, "INVALID_HEADER_TYPE", f"Invalid Sforce-Query-Options: {options}")
            batch = min(max(int(requested), 200), 2000)  # the range Salesforce honours
        locator = to_18(f"01gHp{next(self._cursor_numbers):010d}")
        if len(self._cursors) >= MAX_OPEN_CURSORS:  # abandoned cursors expire; drop the oldest
            del self._cursors[next(iter(self._cursors))]
        self._cursors[locator] = Cursor(records, batch, request.params["endpoint"])
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
