"""Backfill: every Lead (or every Lead changed since a moment) as snapshots, sized first, paged out.

`SELECT COUNT()` decides the route. Below BULK_THRESHOLD leads the REST reader does it (query pages
of up to 2,000, related rows as in polling). From BULK_THRESHOLD up, Bulk API 2.0 query jobs read
the Leads and then, in jobs started only once the Lead job has finished, the whole org's LeadHistory,
progress Tasks and ended Events; the REST path reads related rows after the Leads too, and that
order is what makes a Task completed meanwhile show up in its lead's snapshot or in the next poll.

Bulk rows come in no particular order, so they are sorted by (SystemModstamp, Id) before paging:
then each page's cursor (`at` = highest stamp delivered so far, `seen_ids` = delivered rows within
the lookback of it, plus the progress Tasks read) is safe to commit, exactly like a poll's, and a
crash after any page loses nothing. The snapshots are built by the same `to_snapshot` as polling.

`since`: Leads stamped at or after it, plus leads whose progress Tasks are (those would otherwise
be missed: a Task does not move its lead's SystemModstamp and the next poll starts after `since`).
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connectors.salesforce import queries
from connectors.salesforce.bulk import (
    MAX_RECORDS,
    Row,
    Sleep,
    bulk_rows,
    create_job,
    job_results,
    typed_rows,
    wait_for_job,
)
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.fields import FieldMap
from connectors.salesforce.mapping import LEAD_PREFIX, Related, stamp_of, to_snapshot
from connectors.salesforce.reader import PAGE_MAX, SalesforceReader, seen_key
from sidecar.ports import ChangePage, Cursor, PermanentError

BULK_THRESHOLD = 10_000  # below this, REST pages (2,000 rows a call) cost fewer calls than job polling


@dataclass
class BackfillStats:
    total: int  # leads the COUNT() sized the job at (leads announced only by Tasks come on top)
    via: str  # "bulk" or "rest"
    snapshots: int = 0
    pages: int = 0
    api_calls: int = 0  # every Salesforce request this backfill made, COUNT() included
    cursor: Cursor = field(default_factory=Cursor)  # the last page's: where polling carries on


def count_leads(client: SalesforceClient, since: datetime | None) -> int:
    answer = client.call(lambda sf: sf.query(queries.lead_count(since), include_deleted=since is not None,
                                             timeout=client.timeout))
    return int(answer["totalSize"])


def backfill(client: SalesforceClient, fields: FieldMap, since: datetime | None,
             on_page: Callable[[ChangePage], None], progress: Callable[[int, int], None] | None = None, *,
             clock: Callable[[], datetime], sleep: Sleep = time.sleep, lookback: timedelta | None = None,
             bulk_threshold: int = BULK_THRESHOLD, max_records: int = MAX_RECORDS) -> BackfillStats:
    """Read the Leads (changed since `since`) and hand them to `on_page`, at most 2,000 per page, each
    page with the cursor to commit alongside it. `progress(done, total)` after every page. `clock`
    decides which Events have ended (meetings held), as in polling; `sleep` waits between Bulk polls."""
    calls = client.calls
    total = count_leads(client, since)
    reader = SalesforceReader(client, fields, clock=clock, lookback=lookback)
    stats = BackfillStats(total, "bulk" if total >= bulk_threshold else "rest")
    if stats.via == "bulk":
        pages = _bulk_pages(reader, since, sleep, max_records)
    else:
        pages = reader.read_changes(Cursor()) if since is None else reader.read_since(since)
    for page in pages:
        on_page(page)
        stats.pages += 1
        stats.snapshots += len(page.snapshots)
        stats.cursor = page.cursor
        if progress is not None:
            progress(stats.snapshots, max(total, stats.snapshots))
    stats.api_calls = client.calls - calls
    return stats


_LEAD_DATETIMES = ("SystemModstamp", "LastModifiedDate", "CreatedDate")


def _lead_rows(rows: Sequence[Row], fields: FieldMap) -> list[Row]:
    return typed_rows(rows, booleans=["IsConverted", "IsDeleted", *fields.flags],
                      numbers=[n for n in (fields.score, fields.deal_size) if n], datetimes=_LEAD_DATETIMES)


def _related(reader: SalesforceReader, sleep: Sleep, max_records: int) -> tuple[Related, list[Row]]:
    """LeadHistory, progress Tasks and ended Events of the whole org, three jobs running side by side."""
    client, fields = reader.client, reader.fields
    soql = [queries.history_all(), queries.tasks_all(fields)]
    if fields.meetings:
        soql.append(queries.events_all(reader.clock()))
    jobs = [create_job(client, soql[0])]
    try:
        jobs.append(create_job(client, soql[1]))
    except PermanentError as exc:
        if not reader.key_field_missing(exc):  # the org lacks the Task key field: select without it
            raise
        fields = reader.fields
        jobs.append(create_job(client, queries.tasks_all(fields)))
    jobs += [create_job(client, q) for q in soql[2:]]
    for job in jobs:
        wait_for_job(client, job, sleep)
    rows = [[row for chunk in job_results(client, job, max_records=max_records) for row in chunk] for job in jobs]
    related = Related()
    related.add_history(typed_rows(rows[0], datetimes=["CreatedDate"]))
    completed = [fields.task_completed_at] if fields.task_completed_at else []
    tasks = typed_rows(rows[1], datetimes=["SystemModstamp", "LastModifiedDate", *completed])
    related.add_tasks(tasks, fields)
    if fields.meetings:
        related.add_events(typed_rows(rows[2], datetimes=["EndDateTime"]))
    return related, tasks


def _bulk_pages(reader: SalesforceReader, since: datetime | None, sleep: Sleep,
                max_records: int) -> Iterator[ChangePage]:
    client, fields = reader.client, reader.fields
    chunks = bulk_rows(client, queries.lead_bulk(fields, since), sleep, include_deleted=since is not None,
                       max_records=max_records)  # queryAll with `since`: a lead deleted since then closes
    leads = _lead_rows([row for chunk in chunks for row in chunk], fields)
    related, tasks = _related(reader, sleep, max_records)  # after the Lead job: see module docstring
    if since is not None:
        known = {str(r["Id"]) for r in leads}
        whos = (str(t["WhoId"]) for t in tasks if stamp_of(t) >= since)
        announced = list(dict.fromkeys(w for w in whos if w.startswith(LEAD_PREFIX) and w not in known))
        for soql in queries.leads_by_id(fields, announced):
            leads += client.query_all(soql, include_deleted=True)
    leads.sort(key=lambda r: (stamp_of(r), str(r["Id"])))
    task_keys = sorted((stamp_of(t), seen_key(t)) for t in tasks)
    task_stamps = [stamp for stamp, _ in task_keys]
    window: deque[tuple[datetime, str]] = deque()  # delivered rows within the lookback of `at`
    for start in range(0, len(leads), PAGE_MAX):
        rows = leads[start:start + PAGE_MAX]
        at = stamp_of(rows[-1])
        window.extend((stamp_of(r), seen_key(r)) for r in rows)
        floor = at - reader.lookback
        while window and window[0][0] < floor:
            window.popleft()
        # Progress Tasks were read in full: the next poll need not announce their leads again.
        recent_tasks = (key for _, key in task_keys[bisect.bisect_left(task_stamps, floor):])
        seen = tuple(sorted({key for _, key in window} | set(recent_tasks)))
        yield ChangePage([to_snapshot(r, fields, related) for r in rows], Cursor(at, seen))
