"""Incremental sweep of one object type by its modification stamp, through CRM search.

Rules it keeps (HubSpot's search has sharp edges):
- the lower bound is inclusive: records sharing the boundary millisecond are never skipped; the
  ones already seen are dropped by id;
- only the absence of `paging.next` ends a sweep; a short page may still have a next one;
- one query serves at most 10,000 results, so before `after` reaches 10,000 the sweep restarts
  the query from the last stamp seen.

The restart is where the cost hides. HubSpot allows one sort per search and does not document
how it orders records that share the sorted stamp, yet bulk imports and workflows give hundreds
of records the same millisecond. A plain `GTE stamp` restart serves again every record already
read at that stamp (500 a restart in the bench). So a restart from stamp T, with the set K of
ids already read at T and m = max(K), goes:
- K smaller than a page: `GTE T`, re-reading K costs less than one call;
- otherwise, if a one-row count shows that T has exactly |K| records with id <= m (so none of
  them is unread: the server served T's ties in id order, as the emulator does), the next query
  starts exactly at (T, m): `(EQ T AND hs_object_id GT m) OR (GT T)`. One call, no re-reads;
- otherwise (ties not served in id order): T is read on its own, sorted by `hs_object_id` and
  keyed by `hs_object_id GT last id` (a total order: exact, no 10,000 cap), and the sweep goes on
  with `GT T`. Reading T again costs at most ceil(|T| / page) calls.
Once the server is seen serving ties out of id order, the sweep skips the count from then on.
A record modified during the sweep gets a newer stamp and is read again later.

Lookback (`pages(..., lookback_ms=L, seen_keys=K)`): HubSpot's search index lags writes, so a
record can turn up in search after the cursor passed its stamp. The first query of a poll then
starts at `since - L` (GTE) and drops every record whose "id@stamp" is in K (delivered already);
older-than-cursor records not in K are delivered without moving the cursor. Should that query hit
the result cap, it restarts from the last stamp it served, never jumping to the cursor.

Known gap (not a restart matter): inside one query HubSpot pages by offset, so if a record the
query already served leaves or moves within its results (modified, deleted) before the next page,
the following records shift down by one and the next page skips one of them.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence, Set
from dataclasses import dataclass
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.mapping import parse_time

PAGE_SIZE = 200
RESULT_CAP = 10_000
ID = "hs_object_id"

Filter = dict[str, str]
Groups = list[list[Filter]]  # OR of ANDs, HubSpot's filterGroups


@dataclass(frozen=True)
class SweepPage:
    records: list[dict[str, Any]]
    at_ms: int  # highest stamp seen so far
    ids_at: tuple[str, ...]  # every id seen at that stamp (including the starting cursor's)


def stamp_ms(record: dict[str, Any], prop: str) -> int:
    moment = parse_time((record.get("properties") or {}).get(prop)) or parse_time(record.get("updatedAt"))
    if moment is None:
        raise ValueError(f"HubSpot search returned record {record.get('id')} without {prop}")
    return int(moment.timestamp() * 1000)


def _next_after(body: dict[str, Any]) -> str | None:
    following = ((body.get("paging") or {}).get("next") or {}).get("after")
    return str(following) if following else None


class Sweep:
    def __init__(self, api: HubSpotApi, object_type: str, modified: str, properties: Sequence[str],
                 page_size: int = PAGE_SIZE, result_cap: int = RESULT_CAP) -> None:
        self.api, self.object_type, self.modified = api, object_type, modified
        self.properties = list(dict.fromkeys([*properties, modified, ID]))
        self.page_size = page_size
        self.result_cap = result_cap
        self.searches = 0  # every search call, counts included
        self.restarts = 0  # queries abandoned at the result cap
        self.counts = 0  # one-row searches that proved an exact (stamp, id) restart safe (or not)
        self.reread = 0  # records served again and dropped as already seen: what restarts cost
        self.late = 0  # records found behind the cursor (late in the search index)
        # None: no evidence yet; False once the server served two equal stamps out of id order.
        self.ties_by_id: bool | None = None

    def _filter(self, prop: str, operator: str, value: int) -> Filter:
        return {"propertyName": prop, "operator": operator, "value": str(value)}

    def _search(self, groups: Groups, sort: str, after: str | None = None, limit: int | None = None
                ) -> dict[str, Any]:
        self.searches += 1
        body = {"filterGroups": [{"filters": group} for group in groups],
                "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
                "limit": limit or self.page_size, "after": after, "properties": self.properties}
        result: dict[str, Any] = self.api.call("search", "crm.objects.search_api", "do_search",
                                               self.object_type, body)
        return result

    def pages(self, since_ms: int | None, seen: Sequence[str] = (), *, lookback_ms: int = 0,
              seen_keys: Set[str] = frozenset()) -> Iterator[SweepPage]:
        """Records with stamp >= since_ms (all when None), oldest first, minus `seen` at since_ms;
        with `lookback_ms`, also records in [since_ms - lookback_ms, since_ms) whose "id@stamp" is
        not in `seen_keys` (late in the search index; see the module docstring)."""
        at_ms = since_ms if since_ms is not None else -1
        ids_at: set[str] = set(seen) if since_ms is not None else set()
        behind_ms = since_ms - lookback_ms if since_ms is not None and lookback_ms > 0 else None
        late_keys: set[str] = set()  # delivered behind the cursor during this sweep
        while True:  # one query ("window") per turn, until one ends without paging.next
            if behind_ms is not None:
                groups = [[self._filter(self.modified, "GTE", behind_ms)]]
            else:
                groups = yield from self._window(at_ms, ids_at)
            after: str | None = None
            previous: tuple[int, int] | None = None  # (stamp, id) last served, to learn the tie order
            while True:
                body = self._search(groups, self.modified, after)
                fresh = []
                for record in body.get("results") or []:
                    stamp, rid = stamp_ms(record, self.modified), str(record["id"])
                    if previous is not None and previous[0] == stamp and previous[1] > int(rid):
                        self.ties_by_id = False
                    previous = (stamp, int(rid))
                    if behind_ms is not None:
                        behind_ms = max(behind_ms, stamp)  # where a capped lookback query restarts
                    key = f"{rid}@{stamp}"
                    if key in seen_keys or key in late_keys or (stamp == at_ms and rid in ids_at):
                        self.reread += 1  # boundary or lookback re-read (or served twice as records moved)
                        continue
                    if stamp < at_ms:
                        if behind_ms is None:
                            self.reread += 1
                            continue
                        self.late += 1  # behind the cursor, not delivered yet: late in the index
                        late_keys.add(key)
                        fresh.append(record)
                        continue
                    if stamp > at_ms:
                        at_ms, ids_at = stamp, set()
                    ids_at.add(rid)
                    fresh.append(record)
                if fresh:
                    yield SweepPage(fresh, at_ms, tuple(sorted(ids_at)))
                after = _next_after(body)
                if after is None:
                    return
                if int(after) >= self.result_cap:
                    self.restarts += 1
                    if behind_ms is not None and behind_ms >= at_ms:
                        behind_ms = None  # the lookback range is behind us: exact restarts from here
                    break

    def _window(self, at_ms: int, ids_at: set[str]) -> Generator[SweepPage, None, Groups]:
        """Filter groups for a query resuming after (at_ms, ids_at); may first read at_ms's ties."""
        if at_ms < 0:
            return []  # from the beginning: no filter
        if len(ids_at) < self.page_size:
            # Re-reading fewer known records than one page costs less than the count below.
            return [[self._filter(self.modified, "GTE", at_ms)]]
        top = max(int(i) for i in ids_at)
        if self.ties_by_id is not False:
            self.counts += 1
            body = self._search([[self._filter(self.modified, "EQ", at_ms), self._filter(ID, "LTE", top)]],
                                ID, limit=1)
            if body.get("total") == len(ids_at):
                # Every record at at_ms up to id `top` is known: start exactly after (at_ms, top).
                return [[self._filter(self.modified, "EQ", at_ms), self._filter(ID, "GT", top)],
                        [self._filter(self.modified, "GT", at_ms)]]
            # More (ties served out of id order) or fewer (a known one was modified since): the
            # known ids are no prefix of at_ms's records; read that stamp by id instead.
            self.ties_by_id = False
        yield from self._ties(at_ms, ids_at)
        return [[self._filter(self.modified, "GT", at_ms)]]

    def _ties(self, at_ms: int, ids_at: set[str]) -> Iterator[SweepPage]:
        """Every record at stamp at_ms, in id order, keyed by the last id: exact and uncapped."""
        last_id: int | None = None
        while True:
            group = [self._filter(self.modified, "EQ", at_ms)]
            if last_id is not None:
                group.append(self._filter(ID, "GT", last_id))
            body = self._search([group], ID)
            fresh = []
            for record in body.get("results") or []:
                rid = str(record["id"])
                last_id = max(last_id or 0, int(rid))
                if rid in ids_at:
                    self.reread += 1
                    continue
                ids_at.add(rid)
                fresh.append(record)
            if fresh:
                yield SweepPage(fresh, at_ms, tuple(sorted(ids_at)))
            if _next_after(body) is None or last_id is None:
                return
