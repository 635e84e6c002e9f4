"""`HubSpotReader`: the `CrmReader` port over hubspot-api-client.

One poll (`read_changes`) is:
1. engagements (calls, emails, meetings) modified since the cursor minus `engagement_lookback`
   -> the leads they are on, batch-read and yielded first with the cursor unchanged, one page per
   search page. The first poll (no cursor) reads only engagements modified within
   `backfill_activity_days` (FieldMap), paged the same way, instead of the whole portal's;
2. leads modified at or after the cursor minus `lookback` (FieldMap `lookback_seconds`, default
   10 minutes: HubSpot's search index lags writes, so a lead can appear in search after the
   cursor passed its stamp), 200 per search page (see `search.Sweep`), each page batch-read again
   with `propertiesWithHistory` for exact status/owner transition times, and yielded with the
   cursor advanced to the highest stamp. `seen_ids` holds "id@stamp" of every lead delivered
   within the lookback of the cursor, so the re-read part of the window is dropped, not re-sent.
Merges: a contact merged away still answers a read, but with the surviving record under the
survivor's id, whose `hs_merged_object_ids` lists it. Results are therefore matched by the
requested id, through that property: the survivor is reported, then every id merged into it as a
`merged_into` snapshot (deleted status), so the core closes the merged-away lead and links it to the
survivor. The same happens whenever a survivor is read (a poll sees the survivor, never the
merged-away id); the core ignores ids it never tracked and merges it already recorded.
Ids a batch read does not return at all (deleted) are read again with `archived=true` and reported
with `deleted_status`, which the policy maps to CLOSED.
Why the lookback: the engagement sweep runs before the lead sweep, so an engagement logged while
the lead sweep runs could carry a stamp below the cursor that is finally committed. A poll stops
yielding lead pages after `max_poll_s` (half the lookback); the next poll resumes from its cursor,
so every such engagement is still inside the next poll's lookback.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.engagements import EngagementReader
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.mapping import MERGED_IDS, epoch_ms, merged_ids, merged_snapshot, to_snapshot
from connectors.hubspot.search import Sweep, stamp_ms
from connectors.quota import QuotaGuard
from connectors.records import map_records
from sidecar.domain import Crm, LeadSnapshot, ProgressActivity
from sidecar.ports import ChangePage, Cursor, DirectoryUser, PermanentError

BATCH = 100
# HubSpot refuses a batch read with `propertiesWithHistory` of more than 50 inputs (400
# VALIDATION_ERROR "The maximum number of inputs supported in a batch request for property
# histories is 50"; seen in PipedreamHQ/pipedream#8462, activepieces/activepieces#9359); the
# emulator enforces it too.
HISTORY_BATCH = 50
OWNERS_PAGE = 100


def _record_id(record: Mapping[str, Any]) -> str:
    return str(record.get("id"))


def _utc_now() -> datetime:
    return datetime.now(UTC)


class HubSpotReader:
    crm = Crm.HUBSPOT

    def __init__(self, api: HubSpotApi, fields: FieldMap, *, clock: Callable[[], datetime] = _utc_now,
                 engagement_lookback: timedelta = timedelta(minutes=10),
                 with_engagements: bool = True, lookback: timedelta | None = None) -> None:
        self.api = api
        self.fields = fields
        self.clock = clock
        self.lookback = engagement_lookback
        self.lead_lookback = timedelta(seconds=fields.lookback_seconds) if lookback is None else lookback
        self.max_poll = engagement_lookback / 2
        self.with_engagements = with_engagements
        self.engagements = EngagementReader(api, fields.object, clock=clock)
        # Lead pages are swept with ids and stamps only; the batch read brings the rest.
        self.sweep = Sweep(api, fields.object, fields.modified_property, [])
        self.batch_reads = 0
        # Near the portal's daily limit, polls (both sweeps) slow down (quota.py); read_leads does not.
        self.quota = QuotaGuard(lambda: api.limiter.daily_usage, guard=fields.quota_guard, clock=clock, crm="HubSpot",
                                slow_interval=timedelta(seconds=fields.slow_interval_seconds))

    # -- CrmReader ---------------------------------------------------------------------------------

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        if not self.quota.may_poll():
            return iter(())  # skipped near the daily limit: no call, the cursor stays
        return self._poll(cursor)

    def _poll(self, cursor: Cursor) -> Iterator[ChangePage]:
        started = self.clock()
        since_ms = epoch_ms(cursor.at) if cursor.at is not None else None
        if self.with_engagements:
            if cursor.at is not None:
                eng_since = epoch_ms(cursor.at - self.lookback)
            else:  # first poll: recent engagements only, never the whole portal's history
                eng_since = epoch_ms(started - timedelta(days=self.fields.backfill_activity_days))
            for touched in self.engagements.changed_pages(eng_since):
                snapshots, rejected = self._read(list(touched), touched)
                yield ChangePage(snapshots, cursor, rejected)
        window = _Window(cursor)
        lookback_ms = int(self.lead_lookback.total_seconds() * 1000)
        ids_at = window.ids_at(since_ms) if since_ms is not None else []
        for page in self.sweep.pages(since_ms, ids_at, lookback_ms=lookback_ms, seen_keys=window.keys):
            ids = [str(r["id"]) for r in page.records]
            window.add(page.records, self.fields.modified_property)
            window.prune(page.at_ms - lookback_ms)
            at = datetime.fromtimestamp(page.at_ms / 1000, UTC)
            snapshots, rejected = self._read(ids, {})
            yield ChangePage(snapshots, Cursor(at, window.sorted()), rejected)
            if self.clock() - started > self.max_poll:
                return  # the next poll continues from the committed cursor

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        """Targeted read (webhook intake): the leads with any engagement activity they have."""
        ids = list(dict.fromkeys(str(i) for i in crm_ids))
        snapshots, rejected = self._read(ids, self._activities_of(ids) if self.with_engagements else {})
        if rejected:  # the webhook drain halves the batch until this id stands alone, then sets it aside
            crm_id, why = next(iter(rejected.items()))
            raise PermanentError(f"contact {crm_id} could not be read: {why}")
        return snapshots

    def read_users(self) -> list[DirectoryUser]:
        users = []
        for archived in (False, True):
            after: str | None = None
            while True:
                body = self.api.call("general", "crm.owners.owners_api", "get_page", limit=OWNERS_PAGE,
                                     after=after, archived=archived, scope="crm.objects.owners.read")
                users += [_user(owner, active=not archived) for owner in body.get("results") or []]
                after = ((body.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        return users

    def record_url(self, crm_id: str) -> str:
        return f"https://app.hubspot.com/contacts/{self.fields.portal_id}/record/{self.fields.type_id}/{crm_id}"

    # -- helpers -----------------------------------------------------------------------------------

    def _read(self, ids: Sequence[str], activities: Mapping[str, Sequence[ProgressActivity]]
              ) -> tuple[list[LeadSnapshot], dict[str, str]]:
        """Batch read with property history, 50 ids a call (100 when no history is asked for).
        Merged-away ids come back as their survivor (see the module docstring); ids not returned
        at all are read again as archived (deleted) and reported with `deleted_status`; ids
        unknown even then (never existed, or purged) are skipped. A record that cannot be mapped is
        returned apart, {id: why} (connectors.records)."""
        snapshots: list[LeadSnapshot] = []
        rejected: dict[str, str] = {}
        sent: set[str] = set()  # crm ids reported by this read (a survivor may be asked for twice)
        size = HISTORY_BATCH if self.fields.history_properties else BATCH
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            by_id = self._batch(chunk, archived=False)
            survivor_of = {merged: record for record in by_id.values() for merged in merged_ids(record)}
            gone = [i for i in chunk if i not in by_id and i not in survivor_of]
            archived = self._batch(gone, archived=True) if gone else {}
            for i in chunk:
                record = by_id.get(i) or survivor_of.get(i)  # by the id asked for, not the id returned
                if record is not None and str(record["id"]) not in sent:
                    mapped, refused = map_records([record], lambda r: to_snapshot(
                        r, self.fields, activities.get(str(r["id"]), ())), _record_id)
                    sent.add(str(record["id"]))
                    rejected.update(refused)
                    if not mapped:
                        continue
                    survivor = mapped[0]
                    snapshots.append(survivor)
                    for merged in merged_ids(record):  # after the survivor, so it exists when they link
                        if merged not in sent:
                            snapshots.append(merged_snapshot(survivor, merged, self.fields))
                            sent.add(merged)
                elif i in archived and i not in sent:
                    mapped, refused = map_records([archived[i]], lambda r: to_snapshot(r, self.fields, deleted=True),
                                                  _record_id)
                    snapshots += mapped
                    rejected.update(refused)
                    sent.add(i)
        return snapshots, rejected

    def _batch(self, ids: Sequence[str], *, archived: bool) -> dict[str, dict[str, Any]]:
        self.batch_reads += 1
        body = self.api.call("general", "crm.objects.batch_api", "read", self.fields.object,
                             {"inputs": [{"id": i} for i in ids], "properties": self._properties(),
                              "propertiesWithHistory": self.fields.history_properties},
                             archived=archived, scope=f"crm.objects.{self.fields.object}.read")
        return {str(r["id"]): r for r in (body or {}).get("results") or []}

    def _properties(self) -> list[str]:
        # Merges are a contacts matter (HubSpot's leads object has no hs_merged_object_ids).
        merges = [MERGED_IDS] if self.fields.object == "contacts" else []
        return [*self.fields.properties(), *merges]

    def _activities_of(self, lead_ids: Sequence[str]) -> dict[str, list[ProgressActivity]]:
        out: dict[str, list[ProgressActivity]] = {}
        for lead_id, activity in self.engagements.on_leads(lead_ids):
            out.setdefault(lead_id, []).append(activity)
        return out


class _Window:
    """Leads delivered within the lookback of the cursor, as "id@stamp_ms" (a cursor written before
    the lookback existed holds bare ids: those are the ids at `cursor.at`)."""

    def __init__(self, cursor: Cursor) -> None:
        at_ms = epoch_ms(cursor.at) if cursor.at is not None else None
        self.keys: set[str] = set()
        self._heap: list[tuple[int, str]] = []
        for key in cursor.seen_ids:
            rid, _, stamp = key.partition("@")
            if stamp.isdigit():
                self._put(rid, int(stamp))
            elif at_ms is not None:
                self._put(rid, at_ms)

    def _put(self, rid: str, stamp: int) -> None:
        key = f"{rid}@{stamp}"
        if key not in self.keys:
            self.keys.add(key)
            heapq.heappush(self._heap, (stamp, key))

    def ids_at(self, at_ms: int) -> list[str]:
        return [key.partition("@")[0] for key in self.keys if key.endswith(f"@{at_ms}")]

    def add(self, records: Sequence[Mapping[str, Any]], modified: str) -> None:
        for record in records:
            self._put(str(record["id"]), stamp_ms(dict(record), modified))

    def prune(self, floor_ms: int) -> None:
        while self._heap and self._heap[0][0] < floor_ms:
            self.keys.discard(heapq.heappop(self._heap)[1])

    def sorted(self) -> tuple[str, ...]:
        return tuple(sorted(self.keys))


def _user(owner: Mapping[str, Any], active: bool) -> DirectoryUser:
    teams = owner.get("teams") or []
    primary = next((t for t in teams if t.get("primary")), teams[0] if teams else None)
    name = " ".join(p for p in (owner.get("firstName"), owner.get("lastName")) if p) or owner.get("email", "")
    return DirectoryUser(id=str(owner["id"]), name=name, email=owner.get("email") or "", active=active,
                         team=(primary.get("name") or str(primary.get("id"))) if primary else None)
