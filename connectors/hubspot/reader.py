"""`HubSpotReader`: the `CrmReader` port over hubspot-api-client.

One poll (`read_changes`) is:
1. engagements (calls, emails, meetings) modified since the cursor minus `engagement_lookback`
   -> the leads they are on, batch-read and yielded first with the cursor unchanged;
2. leads modified at or after the cursor, 200 per search page (see `search.Sweep`), each page
   batch-read again with `propertiesWithHistory` for exact status/owner transition times, and
   yielded with the cursor advanced to (highest stamp, ids at it).
Why the lookback: the engagement sweep runs before the lead sweep, so an engagement logged while
the lead sweep runs could carry a stamp below the cursor that is finally committed. A poll stops
yielding lead pages after `max_poll_s` (half the lookback); the next poll resumes from its cursor,
so every such engagement is still inside the next poll's lookback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.engagements import EngagementReader
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.mapping import epoch_ms, to_snapshot
from connectors.hubspot.search import Sweep
from sidecar.domain import Crm, LeadSnapshot, ProgressActivity
from sidecar.ports import ChangePage, Cursor, DirectoryUser

BATCH = 100
OWNERS_PAGE = 100


def _utc_now() -> datetime:
    return datetime.now(UTC)


class HubSpotReader:
    crm = Crm.HUBSPOT

    def __init__(self, api: HubSpotApi, fields: FieldMap, *, clock: Callable[[], datetime] = _utc_now,
                 engagement_lookback: timedelta = timedelta(minutes=10),
                 with_engagements: bool = True) -> None:
        self.api = api
        self.fields = fields
        self.clock = clock
        self.lookback = engagement_lookback
        self.max_poll = engagement_lookback / 2
        self.with_engagements = with_engagements
        self.engagements = EngagementReader(api, fields.object)
        # Lead pages are swept with ids and stamps only; the batch read brings the rest.
        self.sweep = Sweep(api, fields.object, fields.modified_property, [])
        self.batch_reads = 0

    # -- CrmReader ---------------------------------------------------------------------------------

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        started = self.clock()
        since_ms = epoch_ms(cursor.at) if cursor.at is not None else None
        if self.with_engagements:
            eng_since = epoch_ms(cursor.at - self.lookback) if cursor.at is not None else None
            touched = self.engagements.changed_since(eng_since)
            if touched:
                yield ChangePage(self._read(list(touched), touched), cursor)
        for page in self.sweep.pages(since_ms, cursor.seen_ids):
            ids = [str(r["id"]) for r in page.records]
            at = datetime.fromtimestamp(page.at_ms / 1000, UTC)
            yield ChangePage(self._read(ids, {}), Cursor(at, page.ids_at))
            if self.clock() - started > self.max_poll:
                return  # the next poll continues from the committed cursor

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        """Targeted read (webhook intake): the leads with any engagement activity they have."""
        ids = list(dict.fromkeys(str(i) for i in crm_ids))
        return self._read(ids, self._activities_of(ids) if self.with_engagements else {})

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
              ) -> list[LeadSnapshot]:
        """Batch read 100 ids a call with property history; unknown/deleted ids are skipped."""
        snapshots = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            self.batch_reads += 1
            body = self.api.call("general", "crm.objects.batch_api", "read", self.fields.object,
                                 {"inputs": [{"id": i} for i in chunk],
                                  "properties": self.fields.properties(),
                                  "propertiesWithHistory": self.fields.history_properties},
                                 scope=f"crm.objects.{self.fields.object}.read")
            by_id = {str(r["id"]): r for r in (body or {}).get("results") or []}
            snapshots += [to_snapshot(by_id[i], self.fields, activities.get(i, ()))
                          for i in chunk if i in by_id]
        return snapshots

    def _activities_of(self, lead_ids: Sequence[str]) -> dict[str, list[ProgressActivity]]:
        out: dict[str, list[ProgressActivity]] = {}
        for lead_id, activity in self.engagements.on_leads(lead_ids):
            out.setdefault(lead_id, []).append(activity)
        return out


def _user(owner: Mapping[str, Any], active: bool) -> DirectoryUser:
    teams = owner.get("teams") or []
    primary = next((t for t in teams if t.get("primary")), teams[0] if teams else None)
    name = " ".join(p for p in (owner.get("firstName"), owner.get("lastName")) if p) or owner.get("email", "")
    return DirectoryUser(id=str(owner["id"]), name=name, email=owner.get("email") or "", active=active,
                         team=(primary.get("name") or str(primary.get("id"))) if primary else None)
