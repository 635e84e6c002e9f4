"""Calls, emails, meetings and completed first-response tasks as progress on the leads they are
associated with.

Why a stream of its own: logging an engagement need not change any property of the contact, and
we could not confirm that HubSpot always bumps the contact's `lastmodifieddate` when one is
associated (the emulator does not). So each poll also sweeps the four engagement objects by
their own `hs_lastmodifieddate` and re-reads the leads they point at. Activity ids make the
core's ingest idempotent, so seeing an engagement twice is harmless.
Why not one contacts search on the activity roll-ups instead (`notes_last_updated` "Last activity
date", `notes_last_contacted`, `hs_last_sales_activity_timestamp`, OR'd with `lastmodifieddate`;
issue #16 item 4): most progress here is a change to an engagement already logged (a call or
meeting outcome set afterwards, our own first-response task completed), and no HubSpot
documentation we found says such a change moves any contact property; nor whether a roll-up takes
the logging time or the activity's own (possibly backdated) date, nor how soon search sees it.
A contacts-only poll could therefore lose progress silently, so this sweep stays.

Meetings: a booked meeting (outcome SCHEDULED, or an end time still ahead) is not progress; only
outcome COMPLETED, or no outcome and an end time at or before the injected clock, counts, at its
end time. No activity is ever reported later than now (an engagement dated in the future waits).
Known limit: a meeting left without an outcome is seen by this stream only when it is modified; if
it ends unmodified, the lead's next read (webhook, change, or the targeted read) picks it up.

Engagement -> lead links come from the v4 batch association read (POST
/crm/v4/associations/{from}/{to}/batch/read, 100 ids a call). HubSpot documents it, and the
emulator serves it as HubSpot does: 200, or 207 with the inputs that have no links under `errors`.
Should a whole call answer 404 (a gateway or an account without the endpoint), the links come from
one v4 read per engagement instead, counted in `association_reads` so the cost is visible. Links
are cached: they hardly ever change.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.errors import Rejected
from connectors.hubspot.mapping import parse_time
from connectors.hubspot.search import Sweep
from connectors.hubspot.writer import KEY_PROPERTY
from sidecar.domain import ProgressActivity, ProgressKind
from sidecar.ports import FIRST_RESPONSE_TASK_PREFIX

BATCH = 100


@dataclass(frozen=True)
class EngagementKind:
    object_type: str
    progress: ProgressKind
    status_property: str
    # Outcomes that mean the work did not happen (a cancelled meeting is not progress).
    not_progress: frozenset[str]
    end_property: str | None = None  # meetings: when it ends; an empty outcome counts only after it
    # Tasks: only the sidecar's own first-response tasks count (this property holds their key, which
    # starts with FIRST_RESPONSE_TASK_PREFIX), once COMPLETED, at their completion time.
    key_property: str | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


KINDS = (
    EngagementKind("calls", ProgressKind.CALL_LOGGED, "hs_call_status",
                   frozenset({"CANCELED", "FAILED", "QUEUED", "SCHEDULED"})),
    EngagementKind("emails", ProgressKind.EMAIL_SENT, "hs_email_direction",
                   frozenset({"INCOMING_EMAIL"})),  # the lead writing to us is not our progress
    EngagementKind("meetings", ProgressKind.MEETING_HELD, "hs_meeting_outcome",
                   frozenset({"CANCELED", "NO_SHOW", "RESCHEDULED", "SCHEDULED"}), "hs_meeting_end_time"),
    EngagementKind("tasks", ProgressKind.FIRST_RESPONSE_TASK_COMPLETED, "hs_task_status", frozenset(),
                   key_property=KEY_PROPERTY),
)
TASK_COMPLETED_AT = "hs_task_completion_date"  # set by HubSpot when a task is marked completed


def _properties(kind: EngagementKind) -> list[str]:
    names = ["hs_timestamp", "hubspot_owner_id", kind.status_property]
    if kind.key_property:
        names += [kind.key_property, TASK_COMPLETED_AT, "hs_lastmodifieddate"]
    return [*names, kind.end_property] if kind.end_property else names


class EngagementReader:
    def __init__(self, api: HubSpotApi, lead_object: str, cache_size: int = 50_000,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.api = api
        self.clock = clock
        self.lead_object = lead_object
        self.association_reads = 0  # per-object fallback reads
        self.batch_association_reads = 0
        self._batch_supported: bool | None = None
        self._links: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()
        self._cache_size = cache_size
        self.sweeps = {k.object_type: Sweep(api, k.object_type, "hs_lastmodifieddate", _properties(k))
                       for k in KINDS}

    @property
    def searches(self) -> int:
        return sum(s.searches for s in self.sweeps.values())

    def changed_since(self, since_ms: int | None) -> dict[str, list[ProgressActivity]]:
        """Progress per lead id, for every engagement modified at or after `since_ms`."""
        by_lead: dict[str, list[ProgressActivity]] = defaultdict(list)
        for page in self.changed_pages(since_ms):
            for lead_id, activities in page.items():
                by_lead[lead_id] += activities
        return dict(by_lead)

    def changed_pages(self, since_ms: int | None) -> Iterator[dict[str, list[ProgressActivity]]]:
        """`changed_since` one search page (at most 200 engagements) at a time."""
        now = self.clock()
        for kind in KINDS:
            for page in self.sweeps[kind.object_type].pages(since_ms):
                activities = {str(r["id"]): a for r in page.records if (a := _activity(r, kind, now))}
                links = self.links(kind.object_type, list(activities))
                by_lead: dict[str, list[ProgressActivity]] = defaultdict(list)
                for engagement_id, activity in activities.items():
                    for lead_id in links.get(engagement_id, ()):
                        by_lead[lead_id].append(activity)
                if by_lead:
                    yield dict(by_lead)

    def links(self, object_type: str, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Lead ids associated with each engagement id (cached: engagements rarely move)."""
        missing = [i for i in ids if (object_type, i) not in self._links]
        for engagement_id, leads in self._associations(object_type, self.lead_object, missing).items():
            self._remember((object_type, engagement_id), leads)
        return {i: self._links[(object_type, i)] for i in ids if (object_type, i) in self._links}

    def on_leads(self, lead_ids: Sequence[str]) -> list[tuple[str, ProgressActivity]]:
        """(lead id, activity) for every engagement on the given leads (webhook-driven reads)."""
        out: list[tuple[str, ProgressActivity]] = []
        now = self.clock()
        for kind in KINDS:
            by_engagement: dict[str, list[str]] = defaultdict(list)
            for lead_id, engagement_ids in self._associations(self.lead_object, kind.object_type,
                                                              lead_ids).items():
                for engagement_id in engagement_ids:
                    by_engagement[engagement_id].append(lead_id)
            for record in self._batch_read(kind, list(by_engagement)):
                activity = _activity(record, kind, now)
                if activity is not None:
                    out += [(lead_id, activity) for lead_id in by_engagement[str(record["id"])]]
        return out

    def _batch_read(self, kind: EngagementKind, ids: Sequence[str]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for start in range(0, len(ids), BATCH):
            body = self.api.call("general", "crm.objects.batch_api", "read", kind.object_type,
                                 {"inputs": [{"id": i} for i in ids[start:start + BATCH]],
                                  "properties": _properties(kind),
                                  "propertiesWithHistory": []})
            records += (body or {}).get("results") or []
        return records

    def _remember(self, key: tuple[str, str], value: tuple[str, ...]) -> None:
        self._links[key] = value
        self._links.move_to_end(key)
        while len(self._links) > self._cache_size:
            self._links.popitem(last=False)

    def _associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            found = None
            if self._batch_supported is not False:
                found = self._batch_links(from_type, to_type, chunk)
            if found is None:
                found = {i: self._single_links(from_type, to_type, i) for i in chunk}
            out.update({i: found.get(i, ()) for i in chunk})
        return out

    def _batch_links(self, from_type: str, to_type: str, ids: Sequence[str]
                     ) -> dict[str, tuple[str, ...]] | None:
        try:
            body = self.api.call("general", "crm.associations.v4.batch_api", "get_page", from_type, to_type,
                                 {"inputs": [{"id": i} for i in ids]})
        except Rejected as exc:
            if exc.status != 404:
                raise
            self._batch_supported = False  # endpoint missing here: per-object reads from now on
            return None
        self._batch_supported = True
        self.batch_association_reads += 1
        out: dict[str, tuple[str, ...]] = {}
        for row in (body or {}).get("results") or []:
            out[str(row["from"]["id"])] = tuple(str(t["toObjectId"]) for t in row.get("to") or [])
        return out

    def _single_links(self, from_type: str, to_type: str, object_id: str) -> tuple[str, ...]:
        self.association_reads += 1
        ids: list[str] = []
        after: str | None = None
        while True:
            try:
                body = self.api.call("general", "crm.associations.v4.basic_api", "get_page", from_type,
                                     object_id, to_type, after=after, limit=500)
            except Rejected as exc:
                if exc.status != 404:
                    raise
                return tuple(ids)  # deleted or merged away (a deletion webhook reads it): no links
            ids += [str(r["toObjectId"]) for r in (body or {}).get("results") or []]
            after = (((body or {}).get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return tuple(ids)


def _activity(record: dict[str, Any], kind: EngagementKind, now: datetime) -> ProgressActivity | None:
    props = record.get("properties") or {}
    status = (props.get(kind.status_property) or "").upper()
    if status in kind.not_progress:
        return None
    at = parse_time(props.get("hs_timestamp")) or parse_time(props.get("hs_createdate"))
    if kind.key_property:  # a task's hs_timestamp is when it was due, not when it was done
        if status != "COMPLETED" or not str(props.get(kind.key_property) or "").startswith(
                FIRST_RESPONSE_TASK_PREFIX):
            return None  # a rep's own task, or ours still open
        at = parse_time(props.get(TASK_COMPLETED_AT)) or parse_time(props.get("hs_lastmodifieddate"))
    if kind.end_property:
        at = parse_time(props.get(kind.end_property)) or at  # a meeting is held when it ends
        if status != "COMPLETED" and status != "":
            return None  # an outcome we do not know: not evidence that it was held
    if at is None or at > now:
        return None  # never progress from the future (a booked meeting, a mis-dated call)
    return ProgressActivity(crm_id=str(record["id"]), kind=kind.progress, at=at,
                            by=props.get("hubspot_owner_id") or None)

