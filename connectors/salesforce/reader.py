"""SalesforceReader: incremental Lead reads with a boundary-safe cursor, plus a Task stream.

Cursor (sidecar.ports.Cursor) as this connector uses it:
- `at`: the highest SystemModstamp delivered (Lead or progress Task);
- `seen_ids`: "Id@SystemModstamp" of every Lead and Task row delivered whose stamp lies within the
  lookback window (stamp >= at - lookback).
Each poll asks for `SystemModstamp >= at - lookback` (inclusive, never `>`: rows sharing a stamp
across a page boundary, and rows committed a little late, are read again) and drops rows whose
exact (Id, stamp) was already delivered. A row changed again gets a new stamp, so it is new.

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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from connectors.salesforce import queries
from connectors.salesforce.client import Pages, SalesforceClient, Soql
from connectors.salesforce.fields import FieldMap
from connectors.salesforce.mapping import LEAD_PREFIX, Related, parse_time, stamp_of, to_snapshot
from sidecar.domain import Crm, LeadSnapshot
from sidecar.ports import ChangePage, Cursor, DirectoryUser

Row = Mapping[str, Any]
PAGE_MAX = 2000


def seen_key(row: Row) -> str:
    return f"{row['Id']}@{row['SystemModstamp']}"


def _prune(seen: Iterable[str], floor: datetime) -> tuple[str, ...]:
    kept = {key for key in seen if (stamp := parse_time(key.rpartition("@")[2])) and stamp >= floor}
    return tuple(sorted(kept))


class SalesforceReader:
    crm = Crm.SALESFORCE

    def __init__(self, client: SalesforceClient, fields: FieldMap | None = None, *,
                 clock: Callable[[], datetime], lookback: timedelta = timedelta(seconds=2),
                 record_base_url: str | None = None) -> None:
        self.client = client
        self.fields = fields or FieldMap()
        self.clock = clock  # decides which Events have ended (meeting held)
        self.lookback = lookback
        self.record_base_url = record_base_url

    # --- polling ------------------------------------------------------------------------------------

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        if cursor.at is None:
            return self._backfill()
        return self._incremental(cursor.at, set(cursor.seen_ids))

    def read_since(self, since: datetime) -> Iterator[ChangePage]:
        """What a poll from a cursor at `since` delivers, without lookback or seen rows: Leads stamped
        at or after `since`, plus leads whose progress Tasks were (backfill of a recent window)."""
        return self._incremental(since, set(), since)

    def _backfill(self) -> Iterator[ChangePage]:
        batch = [Soql(queries.lead_changes(self.fields, None)), Soql(queries.history_all()),
                 Soql(queries.tasks_all(self.fields))]
        if self.fields.meetings:
            batch.append(Soql(queries.events_all(self.clock())))
        pages, *related_pages = self.client.query_batch(batch)  # the Lead query runs first
        first = next(pages)
        if not first:
            return  # an empty org: the cursor stays unset; the related pages are left unread
        related, task_rows = self.related_everywhere(related_pages)
        at: datetime | None = None
        seen: set[str] = set()
        for rows in chain([first], pages):
            at = max([stamp_of(r) for r in rows] + ([at] if at else []))
            seen.update(seen_key(r) for r in rows)
            yield ChangePage([to_snapshot(r, self.fields, related) for r in rows],
                             Cursor(at, _prune(seen, at - self.lookback)))
        if at is not None and task_rows:  # their leads were just read: no need to read them again
            seen.update(seen_key(r) for r in task_rows)
            yield ChangePage([], Cursor(at, _prune(seen, at - self.lookback)))

    def _incremental(self, at: datetime, seen: set[str], since: datetime | None = None) -> Iterator[ChangePage]:
        since = at - self.lookback if since is None else since
        # One API call; the Lead query must run after the Task query (see module docstring).
        task_pages, pages = self.client.query_batch([
            Soql(queries.task_stream(self.fields, since)),
            Soql(queries.lead_changes(self.fields, since), include_deleted=True)])
        tasks = [r for page in task_pages for r in page if seen_key(r) not in seen]
        task_max = max((stamp_of(r) for r in tasks), default=at)
        first = next(pages)
        whos = (str(r["WhoId"]) for r in tasks)
        announced = list(dict.fromkeys(who for who in whos if who.startswith(LEAD_PREFIX)))
        if tasks:
            seen.update(seen_key(r) for r in tasks)
            for start in range(0, len(announced), PAGE_MAX):
                snapshots = self.read_leads(announced[start:start + PAGE_MAX])
                yield ChangePage(snapshots, Cursor(at, _prune(seen, since)))
            if not announced:
                yield ChangePage([], Cursor(at, _prune(seen, since)))
        original = (at, _prune(seen, since))
        buffered: Sequence[Row] | None = first
        while buffered is not None:
            rows, buffered = buffered, next(pages, None)
            fresh = [r for r in rows if seen_key(r) not in seen]
            at = max([at, *(stamp_of(r) for r in rows)])
            if buffered is None:
                at = max(at, task_max)  # the last page: safe to move past the Task stream too
            seen.update(seen_key(r) for r in fresh)
            cursor = Cursor(at, _prune(seen, at - self.lookback))
            if fresh or (cursor.at, cursor.seen_ids) != original:
                yield ChangePage(self._snapshots(fresh), cursor)

    # --- targeted reads -----------------------------------------------------------------------------

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        ids = list(dict.fromkeys(crm_ids))
        rows: list[Row] = []
        for soql in queries.leads_by_id(self.fields, ids):
            rows += self.client.query_all(soql, include_deleted=True)  # deleted leads close, not vanish
        return self._snapshots(rows)

    def _snapshots(self, rows: Sequence[Row]) -> list[LeadSnapshot]:
        live = [str(r["Id"]) for r in rows if not r.get("IsDeleted")]
        related = self._related_for(live)
        return [to_snapshot(r, self.fields, related) for r in rows]

    def _related_for(self, lead_ids: Sequence[str]) -> Related:
        """History, Tasks and Events of these leads: one query per object per size-chunk of ids."""
        related = Related()
        if not lead_ids:
            return related
        for soql in queries.history_for(lead_ids):
            related.add_history(self.client.query_all(soql))
        for soql in queries.tasks_for(self.fields, lead_ids):
            related.add_tasks(self.client.query_all(soql), self.fields)
        if self.fields.meetings:
            for soql in queries.events_for(lead_ids, self.clock()):
                related.add_events(self.client.query_all(soql))
        return related

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
