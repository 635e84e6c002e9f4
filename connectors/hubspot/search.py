"""Incremental sweep of one object type by its modification stamp, through CRM search.

Rules it keeps (HubSpot's search has sharp edges):
- the lower bound is inclusive (GTE): records sharing the boundary millisecond are re-read and
  dropped by id, never skipped;
- only the absence of `paging.next` ends a sweep; a short page may still have a next one;
- one query serves at most 10,000 results, so before `after` reaches 10,000 the query restarts
  with GTE = the last stamp seen (its records de-duplicated by id);
- if 10,000 records share one stamp a restart makes no progress; those are then paged by
  `hs_object_id` within the stamp and the sweep continues strictly after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.mapping import parse_time

PAGE_SIZE = 200
RESULT_CAP = 10_000


@dataclass(frozen=True)
class SweepPage:
    records: list[dict[str, Any]]
    at_ms: int  # highest stamp seen so far
    ids_at: tuple[str, ...]  # every id seen at that stamp (including the starting cursor's)


def _stamp(record: dict[str, Any], prop: str) -> int:
    moment = parse_time((record.get("properties") or {}).get(prop)) or parse_time(record.get("updatedAt"))
    if moment is None:
        raise ValueError(f"HubSpot search returned record {record.get('id')} without {prop}")
    return int(moment.timestamp() * 1000)


class Sweep:
    def __init__(self, api: HubSpotApi, object_type: str, modified: str, properties: Sequence[str],
                 page_size: int = PAGE_SIZE) -> None:
        self.api, self.object_type, self.modified = api, object_type, modified
        self.properties = list(dict.fromkeys([*properties, modified, "hs_object_id"]))
        self.page_size = page_size
        self.searches = 0
        self.restarts = 0

    def _search(self, filters: list[dict[str, Any]], sort: str, after: str | None) -> dict[str, Any]:
        self.searches += 1
        body = {"filterGroups": [{"filters": filters}] if filters else [],
                "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
                "limit": self.page_size, "after": after, "properties": self.properties}
        result: dict[str, Any] = self.api.call("search", "crm.objects.search_api", "do_search",
                                               self.object_type, body)
        return result

    def pages(self, since_ms: int | None, seen: Sequence[str] = ()) -> Iterator[SweepPage]:
        """Records with stamp >= since_ms (all when None), oldest first, minus `seen` at since_ms."""
        at_ms = since_ms if since_ms is not None else -1
        ids_at: set[str] = set(seen) if since_ms is not None else set()
        operator, window_ms = "GTE", at_ms  # the window's filter stays fixed while paging it
        after: str | None = None
        while True:
            filters = [] if window_ms < 0 else [{"propertyName": self.modified, "operator": operator,
                                                 "value": str(window_ms)}]
            body = self._search(filters, self.modified, after)
            fresh = []
            for record in body.get("results") or []:
                stamp, rid = _stamp(record, self.modified), str(record["id"])
                if stamp < at_ms or (stamp == at_ms and rid in ids_at):
                    continue  # boundary re-read (or a record modified again meanwhile, read later)
                if stamp > at_ms:
                    at_ms, ids_at = stamp, set()
                ids_at.add(rid)
                fresh.append(record)
            if fresh:
                yield SweepPage(fresh, at_ms, tuple(sorted(ids_at)))
            following = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not following:
                return
            if int(following) < RESULT_CAP:
                after = following
                continue
            self.restarts += 1
            if operator == "GTE" and window_ms == at_ms:
                # A whole window at one stamp: page it by id, then go strictly past it.
                yield from self._ties(at_ms, ids_at)
                operator = "GT"
            else:
                operator = "GTE"
            window_ms, after = at_ms, None

    def _ties(self, at_ms: int, ids_at: set[str]) -> Iterator[SweepPage]:
        last_id = max((int(i) for i in ids_at), default=0)
        while True:
            filters = [{"propertyName": self.modified, "operator": "EQ", "value": str(at_ms)},
                       {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}]
            after: str | None = None
            while True:
                body = self._search(filters, "hs_object_id", after)
                records = [r for r in body.get("results") or [] if str(r["id"]) not in ids_at]
                for record in records:
                    ids_at.add(str(record["id"]))
                    last_id = max(last_id, int(record["id"]))
                if records:
                    yield SweepPage(records, at_ms, tuple(sorted(ids_at)))
                following = ((body.get("paging") or {}).get("next") or {}).get("after")
                if not following:
                    return
                if int(following) >= RESULT_CAP:
                    break  # restart from last_id
                after = following
