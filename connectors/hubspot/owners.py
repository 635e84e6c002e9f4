"""Conditional owner changes on HubSpot records, many in a few calls (`BatchOwnerWriter`).

HubSpot has no conditional update, so a person's newer change is found by reading first, as the
single-record path does (`HubSpotWriter.change_owner`), only batched:
1. batch read of the records with the owner property's history: at most 50 inputs a call when
   `propertiesWithHistory` is asked ("The maximum number of inputs supported in a batch request for
   property histories is 50"); 100 otherwise;
2. per record: already the target owner -> done, nothing written (our own earlier attempt); another
   owner than the decision saw, or an owner value set after the decision (history; catches A -> B
   -> A) -> ConflictError, the person's change stands;
3. batch update of the rest, 100 inputs a call. HubSpot answers 207 with the ids it could not find
   (deleted since the read): those fail alone, the others are written. A 400 refuses the whole batch
   (nothing written): its records are then written one by one so that only the invalid one fails.
The window left is the few milliseconds between a batch's read and its update. 1,000 owner changes:
20 reads + 10 updates (the history is what costs: without it a contact read would take 100 a call,
but a change back to the same owner would go unseen).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.creates import WRITE_SCOPE
from connectors.hubspot.errors import Rejected
from connectors.hubspot.mapping import parse_time
from sidecar.ports import ConflictError, OwnerChange, PermanentError, TransientError

HISTORY_READ_MAX = 50
UPDATE_MAX = 100

Results = dict[str, str | Exception]
Single = Callable[[OwnerChange], None]  # the one-record path, for records a batch cannot settle


def judge(object_name: str, change: OwnerChange, current: str | None,
          history: Sequence[Mapping[str, Any]]) -> str | Exception | None:
    """The outcome the read decides, or None when the change is to be written."""
    lead_id = change.lead.crm_id
    if current == change.to_owner_id:
        return f"owner:{change.to_owner_id}"  # our own earlier attempt (or the same decision by a human)
    if current != change.from_owner_id:
        return ConflictError(f"HubSpot {object_name} {lead_id}: owner is now {current or 'nobody'}, not "
                             f"{change.from_owner_id}: a newer change wins")
    seen: datetime = change.seen_modified_at
    later = [v for v in history if (at := parse_time(v.get("timestamp"))) and at > seen]
    if later:
        return ConflictError(f"HubSpot {object_name} {lead_id}: owner changed at {later[0].get('timestamp')} "
                             f"after our decision; current owner {current or 'nobody'} stays")
    return None


class OwnerBatches:
    def __init__(self, api: HubSpotApi, object_name: str, owner_property: str, single: Single) -> None:
        self.api = api
        self.object_name = object_name
        self.owner = owner_property
        self.single = single

    def change_owners(self, items: Sequence[tuple[OwnerChange, str]]) -> Results:
        """Per key "owner:<id>" or that change's own error. Raises only when the first read failed
        as a whole (nothing written)."""
        wanted: dict[str, OwnerChange] = {}
        for change, key in items:
            wanted.setdefault(key, change)  # one key, one change: the first request for it counts
        results: Results = {}
        keys = list(wanted)
        todo: dict[str, OwnerChange] = {}  # judged, to be written: 100 at a time, soon after their read
        for start in range(0, len(keys), HISTORY_READ_MAX):
            chunk = {key: wanted[key] for key in keys[start:start + HISTORY_READ_MAX]}
            try:
                records = self._read([change.lead.crm_id for change in chunk.values()])
            except (TransientError, PermanentError) as exc:
                if not results and not todo:
                    raise
                results.update(dict.fromkeys((key for key in keys[start:]), exc))
                break
            for key, change in chunk.items():
                record = records.get(change.lead.crm_id)
                if record is None:  # not found, or answered under a merge survivor's id: one by one
                    results[key] = self._one(change)
                    continue
                props = record.get("properties") or {}
                history = (record.get("propertiesWithHistory") or {}).get(self.owner) or []
                verdict = judge(self.object_name, change, props.get(self.owner) or None, history)
                if verdict is None:
                    todo[key] = change
                else:
                    results[key] = verdict
            if len(todo) >= UPDATE_MAX:
                ready = list(todo)[:UPDATE_MAX]
                self._write({key: todo.pop(key) for key in ready}, results)
        self._write(todo, results)
        return results

    def _read(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        body = self.api.call("general", "crm.objects.batch_api", "read", self.object_name, {
            "inputs": [{"id": i} for i in dict.fromkeys(ids)], "properties": [self.owner],
            "propertiesWithHistory": [self.owner]}, scope=f"crm.objects.{self.object_name}.read") or {}
        return {str(record["id"]): record for record in body.get("results") or []}

    def _write(self, todo: Mapping[str, OwnerChange], results: Results) -> None:
        """Batch updates of 100 (a record once per call); each change settles on its own answer."""
        pending = list(todo.items())
        while pending:
            chunk: list[tuple[str, OwnerChange]] = []
            later: list[tuple[str, OwnerChange]] = []
            for key, change in pending:
                busy = len(chunk) >= UPDATE_MAX or any(c.lead.crm_id == change.lead.crm_id for _k, c in chunk)
                (later if busy else chunk).append((key, change))
            pending = later
            try:
                body = self.api.call("general", "crm.objects.batch_api", "update", self.object_name, {
                    "inputs": [{"id": c.lead.crm_id, "properties": {self.owner: c.to_owner_id}} for _k, c in chunk]},
                    scope=WRITE_SCOPE) or {}
            except (TransientError, PermanentError) as exc:
                if isinstance(exc, Rejected) and exc.status == 400:
                    for key, change in chunk:  # refused as a whole, nothing written: one by one
                        results[key] = self._one(change)
                else:
                    results.update({key: exc for key, _c in chunk})
                continue
            written = {str(record.get("id")) for record in body.get("results") or []}
            for key, change in chunk:
                if change.lead.crm_id in written:
                    results[key] = f"owner:{change.to_owner_id}"
                else:  # listed in the 207's errors: deleted (or merged away) since the read
                    results[key] = PermanentError(f"HubSpot {self.object_name} {change.lead.crm_id} is no longer "
                                                  "there (deleted or merged): the reassignment was not made")

    def _one(self, change: OwnerChange) -> str | Exception:
        try:
            self.single(change)
        except (TransientError, PermanentError, ConflictError) as exc:
            return exc
        return f"owner:{change.to_owner_id}"
