"""`HubSpotWriter`: the `CrmWriter` port — tasks, notes and the conditional owner change.

Exactly-once creates: every task/note carries the outbox idempotency key in a sidecar-owned
property declared with `hasUniqueValue` (`ensure_properties`), so HubSpot itself refuses a second
record with the same key (409 CONFLICT). Creates therefore go first, without a lookup: a batch
refused with 409 (a replay, or a retry after a timeout whose first attempt got through) is
answered by a batch read by key (`idProperty`; consistent, unlike search, whose index lags writes
by seconds) and only the keys not found are created again. 1,000 new tasks: 10 batch creates.

Batches answer per key (`create_tasks`): one invalid task (say, its contact was deleted) fails
alone while the rest of its batch is written.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.errors import Rejected
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.mapping import epoch_ms, parse_time
from sidecar.domain import Crm
from sidecar.ports import (
    ConflictError,
    LeadUpdate,
    NoteRequest,
    OwnerChange,
    PermanentError,
    TaskRequest,
    TransientError,
)

KEY_PROPERTY = "sidecar_idempotency_key"
BATCH = 100
# Refused sub-batches allowed while isolating invalid inputs of one batch of 100: enough to single
# out two bad inputs (2 x log2(100) halvings), and a bound when every input is refused alike.
SPLIT_BUDGET = 16
# HUBSPOT_DEFINED association type ids (engagement -> lead object); see API-NOTES.md.
ASSOCIATION_TYPES: Mapping[tuple[str, str], int] = {("tasks", "contacts"): 204, ("notes", "contacts"): 202}
PRIORITY = {"high": "HIGH", "normal": "MEDIUM", "low": "LOW"}
WRITE_SCOPE = "crm.objects.contacts.write"
Results = dict[str, str | Exception]  # idempotency key -> record id, or that item's own error


class HubSpotWriter:
    crm = Crm.HUBSPOT

    def __init__(self, api: HubSpotApi, fields: FieldMap, *, key_property: str = KEY_PROPERTY,
                 task_type: str = "TODO", association_types: Mapping[tuple[str, str], int] | None = None
                 ) -> None:
        self.api = api
        self.fields = fields
        self.key_property = key_property
        self.task_type = task_type  # TODO or CALL
        self.association_types = dict(association_types or ASSOCIATION_TYPES)
        lacking = [kind for kind in ("tasks", "notes") if (kind, fields.object) not in self.association_types]
        if lacking:
            # Checked here, not at the first write (a KeyError deep in a batch): we know the
            # HUBSPOT_DEFINED ids for contacts only (204 task->contact, 202 note->contact).
            raise ValueError(
                f"hubspot writer: no association type id for {', '.join(lacking)} -> {fields.object}; pass "
                f"association_types={{('tasks', '{fields.object}'): <id>, ('notes', '{fields.object}'): <id>}} "
                f"(see GET /crm/v4/associations/tasks/{fields.object}/labels in your portal) or track leads "
                "as contacts (object: contacts)")

    def ensure_properties(self) -> list[str]:
        """Create the idempotency-key property on tasks and notes; returns those created now."""
        created = []
        for object_type in ("tasks", "notes"):
            definition = {"name": self.key_property, "label": "Sidecar idempotency key", "type": "string",
                          "fieldType": "text", "groupName": f"{object_type[:-1]}information",
                          "hasUniqueValue": True,
                          "description": "Set by the lead-SLA sidecar so that a retried write never "
                                         "creates a second record. Do not edit."}
            try:
                self.api.call("general", "crm.properties.core_api", "create", object_type, definition,
                              scope=f"crm.schemas.{object_type}.write")
            except Rejected as exc:
                if exc.status != 409:  # 409: it exists already, which is what we want
                    raise
            else:
                created.append(f"{object_type}.{self.key_property}")
        return created

    # -- tasks and notes ---------------------------------------------------------------------------

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        return _one(self.create_tasks([(task, idempotency_key)]), idempotency_key)

    def create_tasks(self, items: Sequence[tuple[TaskRequest, str]]) -> Mapping[str, str | Exception]:
        """`BatchTaskWriter`: per key the id of its task (created now or found), or the error of that
        item alone. One batch create per 100 new keys (1,000 tasks: 10 calls), associations
        included; keys that exist already cost one refused create and one batch read per 100, and
        are never updated (a task a rep completed stays completed). Raises only when nothing could
        be done (the first create failed as a whole: 5xx, 429 after retries, token or scope
        problems)."""
        return self._create_all("tasks", [(self._task_props(task), task.lead.crm_id, key)
                                          for task, key in items])

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        props = {"hs_note_body": _with_link(note.body, note.lead.record_url),
                 "hs_timestamp": str(epoch_ms(note.at))}
        return _one(self._create_all("notes", [(props, note.lead.crm_id, idempotency_key)]), idempotency_key)

    def _task_props(self, task: TaskRequest) -> dict[str, str]:
        return {"hs_timestamp": str(epoch_ms(task.due_at)), "hs_task_subject": task.subject,
                "hs_task_body": _with_link(task.body, task.lead.record_url),
                "hs_task_status": "NOT_STARTED", "hs_task_priority": PRIORITY[task.priority],
                "hs_task_type": self.task_type, "hubspot_owner_id": task.owner_id}

    def _create_all(self, object_type: str, items: Sequence[tuple[dict[str, str], str, str]]) -> Results:
        todo: dict[str, tuple[dict[str, str], str]] = {}
        for props, lead, key in items:
            todo.setdefault(key, (props, lead))  # one key, one record: the first request for it counts
        keyed = list(todo.items())
        results: Results = {}
        for start in range(0, len(keyed), BATCH):
            try:
                results.update(self._create_chunk(object_type, dict(keyed[start:start + BATCH])))
            except (TransientError, PermanentError) as exc:
                if not results:
                    raise  # nothing done: the whole call failed
                # Earlier chunks are written: report them, and this failure for every key not written.
                results.update(dict.fromkeys((key for key, _value in keyed[start:]), exc))
                break
        return results

    def _create_chunk(self, object_type: str, todo: Mapping[str, tuple[dict[str, str], str]]) -> Results:
        return self._create_new(object_type, todo, budget=[SPLIT_BUDGET])

    def _create_new(self, object_type: str, todo: Mapping[str, tuple[dict[str, str], str]],
                    budget: list[int] | None = None) -> Results:
        """Batch-create records for these keys (at most 100).

        409: some keys exist already (a replay, or an earlier attempt got in first; the batch may
        be partly written): read them back by key and create only the rest (each round either
        finds a key or splits the batch, so it ends).
        400: one invalid input makes HubSpot refuse the whole batch (nothing written), so a refused
        batch is split in halves until the bad input stands alone and fails alone: ~2 calls per
        halving, only when something is invalid. `budget` (shared by the halves) bounds that;
        inputs left unisolated are retried later."""
        budget = budget if budget is not None else [SPLIT_BUDGET]
        type_id = self.association_types[(object_type, self.fields.object)]
        inputs: list[dict[str, Any]] = [{"properties": {**props, self.key_property: key},
                   "associations": [{"to": {"id": lead}, "types": [
                       {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}]}
                  for key, (props, lead) in todo.items()]
        try:
            body = self.api.call("general", "crm.objects.batch_api", "create", object_type,
                                 {"inputs": inputs}, scope=WRITE_SCOPE)
        except Rejected as exc:
            if exc.status == 409:
                found: Results = dict(self.lookup(object_type, list(todo)))
                rest = {key: value for key, value in todo.items() if key not in found}
                if found or not rest:
                    return {**found, **self._create_new(object_type, rest, budget)} if rest else found
                # A conflict on none of our keys' records (unexplained): isolate it like a 400.
            elif exc.status != 400:
                raise
            if len(todo) == 1:
                return dict.fromkeys(todo, exc)  # this item is invalid; the others are unaffected
            budget[0] -= 1
            if budget[0] <= 0:  # maybe all invalid alike (e.g. a missing property): stop splitting
                return dict.fromkeys(todo, TransientError(f"not written, the batch holding it was refused: {exc}"))
            keys = list(todo)
            half = len(keys) // 2
            return {**self._create_new(object_type, {k: todo[k] for k in keys[:half]}, budget),
                    **self._create_new(object_type, {k: todo[k] for k in keys[half:]}, budget)}
        # Results are matched to keys by the key property each result carries, never by position:
        # HubSpot does not promise batch results in input order (HubSpot/hubspot-api-nodejs#190,
        # maintainer: "There is no way to do it"). A create answers "a copy of the object,
        # including the ID" with the properties it was given (developers.hubspot.com
        # api-reference crm/activities/tasks create-task; batch create "follows the same rules as
        # creating an individual object" and its response example lists the input properties in
        # results[].properties), so the key comes back with its record. Should a result ever lack
        # it, the keys left unnamed are read back by key: one more batch read, never a duplicate.
        # (Batch upsert by idProperty, POST /crm/v3/objects/tasks/batch/upsert, was not used: its
        # inputs carry no associations (hubspot-api-client 12.0.0 SimplePublicObjectBatchInputUpsert:
        # id, idProperty, properties, objectWriteTraceId), so each 100 would need a second call to
        # associate, a task whose contact is gone would be created unattached instead of failing
        # alone, and a replay would update existing tasks.)
        created: Results = {}
        for record in (body or {}).get("results") or []:
            key = (record.get("properties") or {}).get(self.key_property)
            if key in todo:
                created[str(key)] = str(record["id"])
        unnamed = [key for key in todo if key not in created]
        if unnamed:
            created.update(self.lookup(object_type, unnamed))
        return created

    def lookup(self, object_type: str, keys: Sequence[str]) -> dict[str, str]:
        """key -> id of the records already carrying these keys (one batch read per 100 keys)."""
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

    # -- owner change ------------------------------------------------------------------------------

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        """Re-read, compare, then PATCH: a human's newer change wins (HubSpot has no conditional
        update, so the window left is the few milliseconds between this read and the PATCH)."""
        owner_prop = self.fields.owner
        record = self.api.call("general", "crm.objects.basic_api", "get_by_id", self.fields.object,
                               change.lead.crm_id, properties=[owner_prop, self.fields.modified_property],
                               properties_with_history=[owner_prop])
        current = (record.get("properties") or {}).get(owner_prop) or None
        if current == change.to_owner_id:
            return  # our own earlier attempt (or the same decision by a human): done
        if current != change.from_owner_id:
            raise ConflictError(f"HubSpot {self.fields.object} {change.lead.crm_id}: owner is now "
                                f"{current or 'nobody'}, not {change.from_owner_id}: a newer change wins")
        history: list[dict[str, Any]] = (record.get("propertiesWithHistory") or {}).get(owner_prop) or []
        seen = change.seen_modified_at
        later = [v for v in history if (at := parse_time(v.get("timestamp"))) and at > seen]
        if later:
            raise ConflictError(f"HubSpot {self.fields.object} {change.lead.crm_id}: owner changed at "
                                f"{later[0].get('timestamp')} after our decision; current owner "
                                f"{current or 'nobody'} stays")
        self.api.call("general", "crm.objects.basic_api", "update", self.fields.object, change.lead.crm_id,
                      {"properties": {owner_prop: change.to_owner_id}}, scope=WRITE_SCOPE)


    # -- lead update (tags) ------------------------------------------------------------------------

    def update_lead(self, update: LeadUpdate, idempotency_key: str) -> None:
        """Tags only on this branch; the status change (compliance) comes with the port's owner's
        version of this method, which calls `_apply_tags` the same way."""
        if update.crm_status is not None:
            raise PermanentError("this build of the HubSpot writer cannot change a lead's status yet")
        if update.add_tags:
            self._apply_tags(update.lead.crm_id, update.add_tags)

    def _apply_tags(self, record_id: str, tags: Sequence[str]) -> None:
        """Add `tags` to the configured multiple-checkboxes property, keeping the values it has: read,
        union, PATCH. HubSpot takes several checkbox values as one ";"-separated string, and refuses
        values that are not options of the property (developers.hubspot.com FAQ "How do I set multiple
        values for checkbox properties?"; changelog 2023-05 "increased validation for contact updates").
        A replay finds the tags present and writes nothing."""
        prop = self.fields.tags
        if not prop:
            raise PermanentError("no HubSpot property for tags: set properties.tags in config/hubspot.fields.yaml "
                                 "(a multiple-checkboxes property with the tag as an option)")
        record = self.api.call("general", "crm.objects.basic_api", "get_by_id", self.fields.object, record_id,
                               properties=[prop])
        current = [t for t in str((record.get("properties") or {}).get(prop) or "").split(";") if t]
        wanted = current + [t for t in tags if t not in current]
        if wanted != current:
            self.api.call("general", "crm.objects.basic_api", "update", self.fields.object, record_id,
                          {"properties": {prop: ";".join(wanted)}}, scope=WRITE_SCOPE)


def _one(results: Mapping[str, str | Exception], key: str) -> str:
    """The single-item form of a batch answer: the id, or its error raised."""
    result = results.get(key)
    if result is None:
        raise TransientError(f"HubSpot answered without a record for key {key}")
    if isinstance(result, Exception):
        raise result
    return result


def _with_link(body: str, url: str) -> str:
    """HubSpot renders task/note bodies as HTML: escape ours and end with a link to the record."""
    text = html.escape(body).replace("\n", "<br>")
    return f'{text}<br><a href="{html.escape(url)}">Open the record in HubSpot</a>' if url else text
