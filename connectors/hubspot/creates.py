"""Exactly-once batch creates of tasks and notes, keyed by the outbox idempotency key.

Every record carries its key in a sidecar-owned property (`KEY_PROPERTY`). How a retry finds the
record an earlier attempt may have written depends on what the portal accepted for that property,
read once per object type from its definition (the same fact `sidecar check` reports):

Unique (`hasUniqueValue: true`). HubSpot documents unique values for contacts, companies, deals,
tickets and custom objects, not for engagements, so a portal normally refuses it on tasks and notes
(`ensure_properties` then creates a plain one). Where a portal did accept it: create first; a
second record with the same key is refused (409) and read back by key (`idProperty`, consistent).

Not unique (the normal case). A read by `idProperty` is refused, so only search finds a record by
its key, and search is eventually consistent: a record written seconds ago may not be in its
index yet. So:
1. Before creating, search the keys: a key found is done (its record id is the answer). This is
   what makes a crash safe: a dispatcher that died after sending loses its claim only after the
   lease (minutes), long after the index caught up, and the next one finds the record.
2. Create the rest, sent once (`resend=False`: no blind resend after a network error).
3. An uncertain outcome (a 5xx, or the connection dropped after the request left) is NOT followed
   by a search and a re-create at once: that search could miss the record HubSpot just wrote.
   The keys are remembered with the time and reported as TransientError with
   `retry_after=settle_s` (120 s by default), so the dispatcher comes back once the index has
   caught up; an earlier retry (another caller) gets the same answer without any call. After
   `settle_s`, step 1 finds the record, or shows it never landed, and the key is created.
A duplicate therefore needs an index lag longer than `settle_s` (or than the lease after a crash);
third-party reports put HubSpot's lag at seconds. A definite failure (4xx, 429) wrote nothing and
is retried without waiting. Cost: one search per 100 keys before creating (1,000 tasks: 10 searches
and 10 creates; keys with capitals need two values each, so up to 20); a replay creates nothing.
Keys the caller names `unsent` (the dispatcher's first attempt at them: no earlier attempt can have
written anything) skip the search: 1,000 new tasks = 10 creates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.errors import Rejected, Uncertain
from sidecar.ports import PermanentError, TransientError

log = logging.getLogger(__name__)

BATCH = 100
# Values per search: HubSpot's IN filter takes at most 100. Each key goes in as itself and, when it
# has capitals, lower-cased too (the IN filter on string values is safest with lower-case values),
# so a search covers 100 lower-case keys, or as few as 50 with capitals.
SEARCH_VALUES = 100
SEARCH_PAGE = 200
# Refused sub-batches allowed while isolating invalid inputs of one batch of 100: enough to single
# out two bad inputs (2 x log2(100) halvings), and a bound when every input is refused alike.
SPLIT_BUDGET = 16
SETTLE_S = 120.0
WRITE_SCOPE = "crm.objects.contacts.write"
Results = dict[str, str | Exception]  # idempotency key -> record id, or that item's own error
Todo = Mapping[str, tuple[dict[str, str], str]]  # key -> (properties, lead id)


class KeyedCreates:
    def __init__(self, api: HubSpotApi, key_property: str, association_type: Callable[[str], int],
                 clock: Callable[[], datetime], settle_s: float = SETTLE_S) -> None:
        self.api = api
        self.key_property = key_property
        self.association_type = association_type  # object type -> HUBSPOT_DEFINED type id to the lead
        self.clock = clock
        self.settle = timedelta(seconds=settle_s)
        self.searches = 0
        self._unique: dict[str, bool] = {}
        self._uncertain: dict[str, datetime] = {}  # key -> when its create had an unknown outcome

    # -- what the portal enforces ------------------------------------------------------------------

    def unique(self, object_type: str) -> bool:
        """Whether the portal enforces unique keys on this object (its property definition says
        so); anything else (refused, missing, unreadable) takes the search path, safe either way."""
        if object_type not in self._unique:
            try:
                definition = self.api.call("general", "crm.properties.core_api", "get_by_name", object_type,
                                           self.key_property, scope=f"crm.schemas.{object_type}.read")
            except PermanentError:
                definition = None
            self._unique[object_type] = bool((definition or {}).get("hasUniqueValue"))
        return self._unique[object_type]

    # -- creates -----------------------------------------------------------------------------------

    def create_all(self, object_type: str, items: Sequence[tuple[dict[str, str], str, str]],
                   unsent: Collection[str] = ()) -> Results:
        """Per key the record's id (created now, or found) or that item's own error. Keys in
        `unsent` were never sent by any earlier attempt (the dispatcher's first attempt at them):
        nothing to search for, they are created at once (1,000 new tasks: 10 calls)."""
        todo: dict[str, tuple[dict[str, str], str]] = {}
        for props, lead, key in items:
            todo.setdefault(key, (props, lead))  # one key, one record: the first request for it counts
        keyed = list(todo.items())
        results: Results = {}
        for start in range(0, len(keyed), BATCH):
            try:
                results.update(self._chunk(object_type, dict(keyed[start:start + BATCH]), unsent))
            except (TransientError, PermanentError) as exc:
                if not results:
                    raise  # nothing done: the whole call failed
                # Earlier chunks are written: report them, and this failure for every key not written.
                results.update(dict.fromkeys((key for key, _value in keyed[start:]), exc))
                break
        return results

    def _chunk(self, object_type: str, todo: Todo, unsent: Collection[str]) -> Results:
        if self.unique(object_type):
            return self._create(object_type, todo, [SPLIT_BUDGET], unique=True)
        now = self.clock()
        results: Results = {}
        waiting = {key: at + self.settle - now for key in todo if (at := self._uncertain.get(key)) is not None}
        for key, left in waiting.items():
            if left > timedelta(0):
                results[key] = TransientError(
                    f"an earlier create of {key} had an unknown outcome; looking for it by key after "
                    f"{left.total_seconds():.0f} s (HubSpot's search index lags writes)",
                    retry_after=left.total_seconds())
        rest = {key: value for key, value in todo.items() if key not in results}
        # A key this process saw end uncertain is searched even if the caller thinks it unsent.
        sent = [key for key in rest if key not in unsent or key in self._uncertain]
        found = self.search(object_type, sent) if sent else {}
        for key in found:
            self._uncertain.pop(key, None)
        results.update(found)
        missing = {key: value for key, value in rest.items() if key not in found}
        for key in missing:
            self._uncertain.pop(key, None)  # searched after the settle time: it did not land
        if missing:
            results.update(self._create(object_type, missing, [SPLIT_BUDGET], unique=False))
        return results

    def _create(self, object_type: str, todo: Todo, budget: list[int], *, unique: bool) -> Results:
        """Batch-create records for these keys (at most 100).

        409 (unique keys only): some keys exist already (a replay, or an earlier attempt got in
        first; the batch may be partly written): read them back by key, create only the rest.
        400: one invalid input makes HubSpot refuse the whole batch (nothing written), so a refused
        batch is split in halves until the bad input stands alone and fails alone: ~2 calls per
        halving, only when something is invalid. `budget` (shared by the halves) bounds that;
        inputs left unisolated are retried later."""
        type_id = self.association_type(object_type)
        inputs: list[dict[str, Any]] = [{"properties": {**props, self.key_property: key},
                   "associations": [{"to": {"id": lead}, "types": [
                       {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}]}
                  for key, (props, lead) in todo.items()]
        try:
            body = self.api.call("general", "crm.objects.batch_api", "create", object_type,
                                 {"inputs": inputs}, scope=WRITE_SCOPE, resend=unique)
        except Uncertain as exc:
            if unique:
                raise  # a retry is refused (409) if this one landed: retry as usual
            now = self.clock()
            self._uncertain.update(dict.fromkeys(todo, now))
            log.warning("hubspot create outcome unknown; keys looked up after %.0f s", self.settle.total_seconds(),
                        extra={"object": object_type, "keys": len(todo), "error": str(exc)})
            return dict.fromkeys(todo, TransientError(
                f"{exc}; looking for it by key after {self.settle.total_seconds():.0f} s before creating again",
                retry_after=self.settle.total_seconds()))
        except Rejected as exc:
            if exc.status == 409 and unique:
                found: Results = dict(self.lookup(object_type, list(todo)))
                rest = {key: value for key, value in todo.items() if key not in found}
                if found or not rest:
                    return {**found, **self._create(object_type, rest, budget, unique=True)} if rest else found
                # A conflict on none of our keys' records (unexplained): isolate it like a 400.
            elif exc.status not in (400, 409):
                raise
            if len(todo) == 1:
                return dict.fromkeys(todo, exc)  # this item is invalid; the others are unaffected
            budget[0] -= 1
            if budget[0] <= 0:  # maybe all invalid alike (e.g. a missing property): stop splitting
                return dict.fromkeys(todo, TransientError(f"not written, the batch holding it was refused: {exc}"))
            keys = list(todo)
            half = len(keys) // 2
            return {**self._create(object_type, {k: todo[k] for k in keys[:half]}, budget, unique=unique),
                    **self._create(object_type, {k: todo[k] for k in keys[half:]}, budget, unique=unique)}
        # Results are matched to keys by the key property each result carries, never by position:
        # HubSpot does not promise batch results in input order (HubSpot/hubspot-api-nodejs#190,
        # maintainer: "There is no way to do it"). A create answers "a copy of the object,
        # including the ID" with the properties it was given (developers.hubspot.com
        # api-reference crm/activities/tasks create-task; batch create "follows the same rules as
        # creating an individual object" and its response example lists the input properties in
        # results[].properties), so the key comes back with its record. Should a result ever lack
        # it, the keys left unnamed are looked up by key: never a duplicate.
        # (Batch upsert by idProperty was not used: it needs a unique property, and its inputs
        # carry no associations, so each 100 would need a second call to associate.)
        created: Results = {}
        for record in (body or {}).get("results") or []:
            key = (record.get("properties") or {}).get(self.key_property)
            if key in todo:
                created[str(key)] = str(record["id"])
        unnamed = [key for key in todo if key not in created]
        if unnamed:
            # Read at once: the search index may not list records this very call wrote.
            created.update(self.lookup(object_type, unnamed) if unique else self._unnamed(object_type, unnamed))
        return created

    def _unnamed(self, object_type: str, keys: Sequence[str]) -> Results:
        found: Results = dict(self.search(object_type, keys))
        now = self.clock()
        for key in keys:
            if key not in found:  # written, but not yet searchable: settle like an unknown outcome
                self._uncertain[key] = now
                found[key] = TransientError(f"HubSpot answered without the record for key {key}; "
                                            "looking for it by key later", retry_after=self.settle.total_seconds())
        return found

    # -- finding records by key --------------------------------------------------------------------

    def lookup(self, object_type: str, keys: Sequence[str]) -> dict[str, str]:
        """key -> id by `idProperty` (unique keys only: HubSpot refuses it on a non-unique property)."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), BATCH):
            body = self.api.call("general", "crm.objects.batch_api", "read", object_type,
                                 {"inputs": [{"id": k} for k in keys[start:start + BATCH]],
                                  "idProperty": self.key_property, "properties": [self.key_property],
                                  "propertiesWithHistory": []},
                                 scope=f"crm.objects.{object_type}.read")
            for record in (body or {}).get("results") or []:
                found[str(record["properties"][self.key_property])] = str(record["id"])
        return found

    def search(self, object_type: str, keys: Sequence[str]) -> dict[str, str]:
        """key -> id of the records search lists with these keys (oldest id if, against all odds,
        one key is on two records). Only finds what the index holds: see the module docstring."""
        found: dict[str, str] = {}
        for chunk, values in key_chunks(keys):
            wanted = set(chunk)
            after: str | None = None
            while True:
                self.searches += 1
                body: dict[str, Any] = self.api.call("search", "crm.objects.search_api", "do_search", object_type, {
                    "filterGroups": [{"filters": [{"propertyName": self.key_property, "operator": "IN",
                                                   "values": values}]}],
                    "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    "properties": [self.key_property], "limit": SEARCH_PAGE, "after": after,
                }, scope=f"crm.objects.{object_type}.read") or {}
                for record in body.get("results") or []:
                    key = (record.get("properties") or {}).get(self.key_property)
                    if key in wanted:
                        if key in found:
                            log.warning("hubspot: two %s carry key %s (%s, %s); using the first",
                                        object_type, key, found[key], record["id"])
                        else:
                            found[str(key)] = str(record["id"])
                after = ((body.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        return found


def key_chunks(keys: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """The keys in order, cut so that each chunk's IN values (every key, and its lower-case form
    when that differs) number at most SEARCH_VALUES: (keys, values) per search."""
    chunks: list[tuple[list[str], list[str]]] = []
    chunk: list[str] = []
    values: dict[str, None] = {}
    for key in dict.fromkeys(keys):
        mine = dict.fromkeys([key, key.lower()])
        if chunk and len(values) + len([v for v in mine if v not in values]) > SEARCH_VALUES:
            chunks.append((chunk, list(values)))
            chunk, values = [], {}
        chunk.append(key)
        values.update(mine)
    if chunk:
        chunks.append((chunk, list(values)))
    return chunks
