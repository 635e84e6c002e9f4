"""SalesforceReader: incremental Lead reads with a boundary-safe cursor, plus a Task stream.

Cursor (sidecar.ports.Cursor) as this connector uses it:
- `at`: the highest SystemModstamp delivered (Lead or progress Task);
- `seen_ids`: "Id@SystemModstamp" of every Lead, Task and Event row delivered whose stamp lies
  within the lookback window (stamp >= at - lookback), kept in a `SeenWindow` pruned in place.
SystemModstamp is set when a row is written, not when its transaction commits: a long transaction
makes rows visible minutes later with stamps older than the cursor. So the lookback (FieldMap
`lookback_seconds`, default 5 minutes) must exceed the org's longest transaction. Leads are read
as two subrequests: `SystemModstamp >= at` (inclusive, never `>`: ties across a page boundary) and
the rows behind the cursor, `[at - lookback, at)`. Rows whose exact (Id, stamp) was delivered are
dropped (a row changed again gets a new stamp, so it is new). The rows behind the cursor come
with the same composite call; when they fill more than its first page (a bulk load inside the
lookback), their totalSize is compared with the number of leads delivered there instead of
re-reading them all, and the rest is read only when the two differ (rows committed late, or
gone). Known limit of that shortcut: inside such a burst, a late-committed *update* of a lead
already delivered there (same count) is seen only when the lead changes again.

Events: a meeting ends without any row changing, so the Event stream asks for Events that ended
in (previous poll, now] or were changed within the lookback and have ended (logged after the
fact); their leads are re-read like those of Tasks. Same composite call.

Two streams, one cursor. A Task completed on a lead does not move the Lead's SystemModstamp, so
every incremental poll first queries progress Tasks changed since the cursor, then the Leads; the
Task query runs first so that, once the Lead query has run, every Lead stamped up to the newest
Task stamp has been read, which is what lets `at` advance to that Task stamp. Leads announced only
by Tasks come in a first page that keeps the old `at` (their Tasks go into `seen_ids`), so a crash
after it loses nothing. SOQL has no UNION and refuses semi-joins under OR, so the two stay two
queries, but they travel in ONE API call: a Composite request with both as subrequests, run in
order (collateSubrequests false). Steady state with nothing changed: 1 API call. When a stream has
more rows, its `nextRecordsUrl` is followed with ordinary queryMore calls; reading the Task stream's
later pages after the Lead query ran changes nothing, since a query's result set is fixed when it runs.

Backfill (`at is None`): the first Lead page and the first pages of LeadHistory, Tasks and Events
come in one Composite call (Lead query first, as before); the related objects are read once for the
whole org (paged) instead of per page of leads: 100k leads cost 50 Lead pages plus a few pages of
related rows, not 50 x 3 x chunks of IN queries. For very large orgs see backfill.py (Bulk API 2.0).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from connectors.quota import QuotaGuard
from connectors.records import map_records
from connectors.salesforce import queries
from connectors.salesforce.client import Pages, SalesforceClient, Soql
from connectors.salesforce.fields import FieldMap
from connectors.salesforce.mapping import LEAD_PREFIX, Related, parse_time, stamp_of, to_snapshot
from sidecar.domain import Crm, LeadSnapshot
from sidecar.ports import ChangePage, Cursor, DirectoryUser, PermanentError

log = logging.getLogger(__name__)
Row = Mapping[str, Any]
PAGE_MAX = 2000


def _row_id(row: Row) -> str:
    return str(row.get("Id"))


def seen_key(row: Row) -> str:
    return f"{row['Id']}@{row['SystemModstamp']}"


class SeenWindow:
    """Delivered rows ("Id@SystemModstamp") within the lookback of the cursor. Parsed once per poll
    and pruned in place (a heap by stamp) as the cursor moves, so a page costs its own rows, not a
    re-parse of everything delivered so far."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._stamps: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []
        for key in keys:
            stamp = parse_time(key.rpartition("@")[2])
            if stamp is not None:
                self._put(key, stamp)

    def _put(self, key: str, stamp: datetime) -> None:
        if key not in self._stamps:
            self._stamps[key] = stamp
            heapq.heappush(self._heap, (stamp, key))

    def __contains__(self, key: object) -> bool:
        return key in self._stamps

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self._put(seen_key(row), stamp_of(row))

    def prune(self, floor: datetime) -> None:
        while self._heap and self._heap[0][0] < floor:
            self._stamps.pop(heapq.heappop(self._heap)[1], None)

    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self._stamps))

    def latest_between(self, prefix: str, start: datetime, end: datetime) -> set[str]:
        """Ids (of this key prefix) whose newest delivered stamp lies in [start, end)."""
        newest: dict[str, datetime] = {}
        for key, stamp in self._stamps.items():
            row_id = key.rpartition("@")[0]
            if row_id.startswith(prefix) and stamp > newest.get(row_id, stamp - timedelta(1)):
                newest[row_id] = stamp
        return {row_id for row_id, stamp in newest.items() if start <= stamp < end}


class SalesforceReader:
    crm = Crm.SALESFORCE

    def __init__(self, client: SalesforceClient, fields: FieldMap | None = None, *,
                 clock: Callable[[], datetime], lookback: timedelta | None = None,
                 record_base_url: str | None = None) -> None:
        self.client = client
        self.fields = fields or FieldMap()
        self.clock = clock  # decides which Events have ended (meeting held)
        self.lookback = self.fields.lookback if lookback is None else lookback
        self.record_base_url = record_base_url
        # The `now` up to which ended Events were announced (in memory: after a restart the Event
        # stream starts again from the cursor's lookback floor, which is earlier, so nothing is lost).
        self.events_until: datetime | None = None
        self.late_reads = 0  # polls that found rows committed late behind the cursor
        # Near the org's daily API limit, polls slow down (quota.py); read_leads and read_since do not.
        self.quota = QuotaGuard(client.api_usage, guard=self.fields.quota_guard, clock=clock, crm="Salesforce",
                                slow_interval=timedelta(seconds=self.fields.slow_interval_seconds))

    # --- polling ------------------------------------------------------------------------------------

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        if not self.quota.may_poll():
            return iter(())  # skipped near the daily limit: no call, the cursor stays
        if cursor.at is None:
            return self._backfill()
        return self._incremental(cursor.at, cursor.seen_ids)

    def read_since(self, since: datetime) -> Iterator[ChangePage]:
        """What a poll from a cursor at `since` delivers, without lookback or seen rows: Leads stamped
        at or after `since`, plus leads whose progress Tasks were (backfill of a recent window)."""
        return self._incremental(since, (), since)

    def _backfill(self) -> Iterator[ChangePage]:
        now = self.clock()
        batch = [Soql(queries.lead_changes(self.fields, None)), Soql(queries.history_all()),
                 Soql(queries.tasks_all(self.fields))]
        if self.fields.meetings:
            batch.append(Soql(queries.events_all(now)))
        pages, *related_pages = self._query_batch(batch, lambda: [  # the Lead query runs first
            *batch[:2], Soql(queries.tasks_all(self.fields)), *batch[3:]])
        first = next(pages)
        if not first:
            return  # an empty org: the cursor stays unset; the related pages are left unread
        related, task_rows = self.related_everywhere(related_pages)
        at: datetime | None = None
        window = SeenWindow()
        for rows in chain([first], pages):
            at = max([stamp_of(r) for r in rows] + ([at] if at else []))
            window.add(rows)
            window.prune(at - self.lookback)
            yield self._page(rows, Cursor(at, window.keys()), related)
        if at is not None and task_rows:  # their leads were just read: no need to read them again
            window.add(task_rows)
            window.prune(at - self.lookback)
            yield ChangePage([], Cursor(at, window.keys()))
        self.events_until = now

    def _incremental(self, at: datetime, seen_ids: Sequence[str], since: datetime | None = None
                     ) -> Iterator[ChangePage]:
        """One poll; see the module docstring. Composite subrequests, in this order: progress Tasks
        and ended Events since the lookback floor, the Leads stamped in [floor, at) (rows committed
        late show up here) and the Leads stamped at or after `at`."""
        floor = at - self.lookback if since is None else since
        window = SeenWindow(seen_ids)
        now = self.clock()
        batch = [Soql(queries.task_stream(self.fields, floor))]
        if self.fields.meetings:
            ended_after = floor if self.events_until is None else min(self.events_until, now)
            batch.append(Soql(queries.event_stream(ended_after, floor, now)))
        if floor < at:
            batch.append(Soql(queries.lead_range(self.fields, floor, at), include_deleted=True))
        batch.append(Soql(queries.lead_changes(self.fields, at), include_deleted=True))
        results = self._query_batch(batch, lambda: [Soql(queries.task_stream(self.fields, floor)), *batch[1:]])
        streams = 2 if self.fields.meetings else 1
        activity_rows = [r for stream in results[:streams] for page in stream for r in page]
        behind = results[-2] if floor < at else None
        pages = results[-1]
        activities = [r for r in activity_rows if seen_key(r) not in window]
        tasks = [r for r in activities if not str(r["Id"]).startswith("00U")]
        task_max = max((stamp_of(r) for r in tasks), default=at)
        whos = (str(r["WhoId"]) for r in activities)
        announced = list(dict.fromkeys(who for who in whos if who.startswith(LEAD_PREFIX)))
        if activities:
            window.add(activities)
            window.prune(floor)
            for start in range(0, len(announced), PAGE_MAX):
                yield self._page(self._rows_by_id(announced[start:start + PAGE_MAX]), Cursor(at, window.keys()))
            if not announced:
                yield ChangePage([], Cursor(at, window.keys()))
        window.prune(floor)
        expected = window.latest_between(LEAD_PREFIX, floor, at) if behind is not None else set()
        first_behind: Sequence[Row] = next(behind, []) if behind is not None else []
        late = [r for r in first_behind if seen_key(r) not in window]
        if late:  # committed late, behind the cursor: deliver without moving it
            self.late_reads += 1
            window.add(late)
            yield self._page(late, Cursor(at, window.keys()))
        original = (at, window.keys())
        moved: set[str] = set()
        first_at = at
        buffered: Sequence[Row] | None = next(pages)
        while buffered is not None:
            rows, buffered = buffered, next(pages, None)
            moved.update(str(r["Id"]) for r in rows)
            fresh = [r for r in rows if seen_key(r) not in window]
            at = max([at, *(stamp_of(r) for r in rows)])
            if buffered is None:
                at = max(at, task_max)  # the last page: safe to move past the Task stream too
            window.add(fresh)
            window.prune(at - self.lookback)
            cursor = Cursor(at, window.keys())
            if fresh or (cursor.at, cursor.seen_ids) != original:
                yield self._page(fresh, cursor)
        if behind is not None and behind.total_size > len(first_behind):
            # More rows behind the cursor than one page: read the rest only when their number is not
            # the number delivered there (rows committed late, or gone): a bulk load inside the
            # lookback costs one call per poll, not one per 2,000 rows re-read.
            known = (expected - moved) | {str(r["Id"]) for r in late}
            if behind.total_size != len(known):
                self.late_reads += 1
                for rows in behind:
                    fresh = [r for r in rows if seen_key(r) not in window and stamp_of(r) < first_at]
                    window.add(fresh)
                    window.prune(at - self.lookback)
                    if fresh:
                        yield self._page(fresh, Cursor(at, window.keys()))
        self.events_until = now

    def _query_batch(self, batch: list[Soql], rebuild: Callable[[], list[Soql]]) -> list[Pages]:
        """ONE API call; once more with `rebuild()`'s queries if the org lacks the Task key field."""
        try:
            return self.client.query_batch(batch)
        except PermanentError as exc:
            if not self.key_field_missing(exc):
                raise
        return self.client.query_batch(rebuild())

    def key_field_missing(self, exc: PermanentError) -> bool:
        """The org has no Task key field (the writer falls back to Description markers then): stop
        selecting it. Completed first-response tasks are then not recognised as progress."""
        key = self.fields.key_field
        if key is None or "INVALID_FIELD" not in str(exc) or key.lower() not in str(exc).lower():
            return False
        log.warning("Task.%s does not exist: completed first-response tasks cannot be recognised as progress "
                    "(create the field, see `sidecar check`)", key)
        self.fields = dataclasses.replace(self.fields, key_field=None)
        return True

    # --- targeted reads -----------------------------------------------------------------------------

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        return self._snapshots(self._rows_by_id(crm_ids))

    def _rows_by_id(self, crm_ids: Sequence[str]) -> list[Row]:
        ids = list(dict.fromkeys(crm_ids))
        rows: list[Row] = []
        for soql in queries.leads_by_id(self.fields, ids):
            rows += self.client.query_all(soql, include_deleted=True)  # deleted leads close, not vanish
        return rows

    def _snapshots(self, rows: Sequence[Row]) -> list[LeadSnapshot]:
        """A targeted read: a row that cannot be mapped fails the read, so the webhook drain (which
        halves a refused batch) dead-letters that id alone with the reason."""
        related = self._related_for([str(r["Id"]) for r in rows if not r.get("IsDeleted")])
        snapshots, rejected = map_records(rows, lambda r: to_snapshot(r, self.fields, related), _row_id)
        if rejected:
            crm_id, why = next(iter(rejected.items()))
            raise PermanentError(f"Lead {crm_id} could not be read: {why}")
        return snapshots

    def _page(self, rows: Sequence[Row], cursor: Cursor, related: Related | None = None) -> ChangePage:
        """Rows read by a poll: one that cannot be mapped is set aside on the page, the rest go on."""
        if related is None:
            related = self._related_for([str(r["Id"]) for r in rows if not r.get("IsDeleted")])
        snapshots, rejected = map_records(rows, lambda r: to_snapshot(r, self.fields, related), _row_id)
        return ChangePage(snapshots, cursor, rejected)

    def _related_for(self, lead_ids: Sequence[str]) -> Related:
        """History, Tasks and Events of these leads: one query per object per size-chunk of ids."""
        related = Related()
        if not lead_ids:
            return related
        for soql in queries.history_for(lead_ids):
            related.add_history(self.client.query_all(soql))
        try:
            related.add_tasks(self._tasks_of(lead_ids), self.fields)
        except PermanentError as exc:
            if not self.key_field_missing(exc):
                raise
            related.add_tasks(self._tasks_of(lead_ids), self.fields)
        if self.fields.meetings:
            for soql in queries.events_for(lead_ids, self.clock()):
                related.add_events(self.client.query_all(soql))
        return related

    def _tasks_of(self, lead_ids: Sequence[str]) -> list[Row]:
        return [row for soql in queries.tasks_for(self.fields, lead_ids) for row in self.client.query_all(soql)]

    def related_everywhere(self, pages: Sequence[Pages]) -> tuple[Related, list[dict[str, Any]]]:
        """Related rows of the whole org from the pages of history_all, tasks_all (, events_all)."""
        related = Related()
        related.add_history(row for page in pages[0] for row in page)
        task_rows = [row for page in pages[1] for row in page]
        related.add_tasks(task_rows, self.fields)
        if len(pages) > 2:
            related.add_events(row for page in pages[2] for row in page)
        return related, task_rows

    # --- directory and links ------------------------------------------------------------------------

    def read_users(self) -> list[DirectoryUser]:
        """Active and inactive users: an inactive owner must still resolve to a name and a manager."""
        team = self.fields.user_team
        return [DirectoryUser(id=str(r["Id"]), name=str(r.get("Name") or ""), email=str(r.get("Email") or ""),
                              active=bool(r.get("IsActive")), manager_id=r.get("ManagerId"),
                              team=str(r[team]) if team and r.get(team) else None)
                for r in self.client.query_all(queries.users_query(self.fields))]

    def record_url(self, crm_id: str) -> str:
        base = self.record_base_url or self.client.instance_url
        return f"{base.rstrip('/')}/lightning/r/Lead/{crm_id}/view"
