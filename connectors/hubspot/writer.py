"""`HubSpotWriter`: the `CrmWriter` port — tasks, notes and the conditional owner change.

Exactly-once creates: every task/note carries the outbox idempotency key in a sidecar-owned
property declared with `hasUniqueValue` (`ensure_properties`). Before creating, the keys are looked
up with a batch read by `idProperty` (consistent, unlike search, whose index lags writes by
seconds, so a retry right after a timeout could miss the first attempt). If a create still races
an earlier attempt, HubSpot refuses the duplicate with 409 and the record is read back by key.
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
from sidecar.ports import ConflictError, NoteRequest, OwnerChange, TaskRequest

KEY_PROPERTY = "sidecar_idempotency_key"
BATCH = 100
# HUBSPOT_DEFINED association type ids (engagement -> lead object); see API-NOTES.md.
ASSOCIATION_TYPES: Mapping[tuple[str, str], int] = {("tasks", "contacts"): 204, ("notes", "contacts"): 202}
PRIORITY = {"high": "HIGH", "normal": "MEDIUM", "low": "LOW"}
WRITE_SCOPE = "crm.objects.contacts.write"


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
        return self.create_tasks([(task, idempotency_key)])[0]

    def create_tasks(self, items: Sequence[tuple[TaskRequest, str]]) -> list[str]:
        """Ids of the tasks for each (request, key), creating only those whose key is new."""
        return self._create_all("tasks", [(self._task_props(task), task.lead.crm_id, key)
                                          for task, key in items])

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        props = {"hs_note_body": _with_link(note.body, note.lead.record_url),
                 "hs_timestamp": str(epoch_ms(note.at))}
        return self._create_all("notes", [(props, note.lead.crm_id, idempotency_key)])[0]

    def _task_props(self, task: TaskRequest) -> dict[str, str]:
        return {"hs_timestamp": str(epoch_ms(task.due_at)), "hs_task_subject": task.subject,
                "hs_task_body": _with_link(task.body, task.lead.record_url),
                "hs_task_status": "NOT_STARTED", "hs_task_priority": PRIORITY[task.priority],
                "hs_task_type": self.task_type, "hubspot_owner_id": task.owner_id}

    def _create_all(self, object_type: str, items: Sequence[tuple[dict[str, str], str, str]]) -> list[str]:
        ids: dict[str, str] = {}
        for start in range(0, len(items), BATCH):
            chunk = items[start:start + BATCH]
            ids.update(self._create_chunk(object_type, chunk))
        return [ids[key] for _props, _lead, key in items]

    def _create_chunk(self, object_type: str, chunk: Sequence[tuple[dict[str, str], str, str]],
                      retry_each: bool = True) -> dict[str, str]:
        keys = list(dict.fromkeys(key for _props, _lead, key in chunk))
        found = self.lookup(object_type, keys)
        todo = {key: (props, lead) for props, lead, key in chunk if key not in found}
        if not todo:
            return found
        type_id = self.association_types[(object_type, self.fields.object)]
        inputs: list[dict[str, Any]] = [{"properties": {**props, self.key_property: key},
                   "associations": [{"to": {"id": lead}, "types": [
                       {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}]}
                  for key, (props, lead) in todo.items()]
        try:
            body = self.api.call("general", "crm.objects.batch_api", "create", object_type,
                                 {"inputs": inputs}, scope=WRITE_SCOPE)
        except Rejected as exc:
            if exc.status != 409 or not retry_each:
                raise
            # An earlier attempt got some of these in first (the batch may be partly written):
            # read back what exists and create the rest one by one.
            return {**found, **self._create_each(object_type, todo)}
        for record in (body or {}).get("results") or []:
            key = (record.get("properties") or {}).get(self.key_property)
            if key:
                found[str(key)] = str(record["id"])
        # Batch results come in no promised order and need not echo our property: read back the
        # keys the response did not name (one more batch read per 100).
        unnamed = [key for key in todo if key not in found]
        return {**found, **self.lookup(object_type, unnamed)} if unnamed else found

    def _create_each(self, object_type: str, todo: Mapping[str, tuple[dict[str, str], str]]
                     ) -> dict[str, str]:
        done = self.lookup(object_type, list(todo))
        for key, (props, lead) in todo.items():
            if key not in done:
                try:
                    done.update(self._create_chunk(object_type, [(props, lead, key)], retry_each=False))
                except Rejected as exc:
                    if exc.status != 409:
                        raise
                    done.update(self.lookup(object_type, [key]))  # lost a race with ourselves: read it
        return done

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


def _with_link(body: str, url: str) -> str:
    """HubSpot renders task/note bodies as HTML: escape ours and end with a link to the record."""
    text = html.escape(body).replace("\n", "<br>")
    return f'{text}<br><a href="{html.escape(url)}">Open the record in HubSpot</a>' if url else text
