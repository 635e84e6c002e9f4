"""`HubSpotWriter`: the `CrmWriter` port — tasks, notes and the conditional owner change.

Exactly-once creates: every task/note carries the outbox idempotency key in a sidecar-owned
property (`ensure_properties`), and `creates.KeyedCreates` makes sure a retry finds the record an
earlier attempt wrote instead of writing a second one: by search before creating, waiting out
HubSpot's search-index lag after an unknown outcome (unique values, which would let HubSpot refuse
the duplicate itself, are not documented for tasks and notes; used only where the portal accepted
them). See creates.py for the reasoning.

Batches answer per key (`create_tasks`): one invalid task (say, its contact was deleted) fails
alone while the rest of its batch is written.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.creates import SETTLE_S, WRITE_SCOPE, KeyedCreates
from connectors.hubspot.errors import Rejected
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.mapping import epoch_ms
from connectors.hubspot.owners import OwnerBatches, judge
from sidecar.domain import Crm
from sidecar.ports import (
    ConflictError,
    LeadUpdate,
    NoteRequest,
    OwnerChange,
    PermanentError,
    TaskRequest,
    TaskUpdate,
    TransientError,
)

KEY_PROPERTY = "sidecar_idempotency_key"
# HUBSPOT_DEFINED association type ids (engagement -> lead object); see API-NOTES.md.
ASSOCIATION_TYPES: Mapping[tuple[str, str], int] = {("tasks", "contacts"): 204, ("notes", "contacts"): 202}
PRIORITY = {"high": "HIGH", "normal": "MEDIUM", "low": "LOW"}
KEY_OBJECTS = ("tasks", "notes")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class HubSpotWriter:
    crm = Crm.HUBSPOT

    def __init__(self, api: HubSpotApi, fields: FieldMap, *, key_property: str = KEY_PROPERTY,
                 task_type: str = "TODO", association_types: Mapping[tuple[str, str], int] | None = None,
                 clock: Callable[[], datetime] = _utc_now, settle_s: float = SETTLE_S) -> None:
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
        self.creates = KeyedCreates(api, key_property, lambda kind: self.association_types[(kind, fields.object)],
                                    clock, settle_s)
        self.owners = OwnerBatches(api, fields.object, fields.owner, lambda change: self.change_owner(change, ""))

    def ensure_properties(self) -> list[str]:
        """Create the idempotency-key property on tasks and notes; returns those created now.
        Asks for unique values first (HubSpot would then refuse a duplicate itself) and, when the
        portal refuses that (400: not documented for engagements), creates a plain property."""
        created = []
        for object_type in KEY_OBJECTS:
            definition = {"name": self.key_property, "label": "Sidecar idempotency key", "type": "string",
                          "fieldType": "text", "groupName": f"{object_type[:-1]}information",
                          "hasUniqueValue": True,
                          "description": "Set by the lead-SLA sidecar so that a retried write never "
                                         "creates a second record. Do not edit."}
            for unique in (True, False):
                try:
                    self.api.call("general", "crm.properties.core_api", "create", object_type,
                                  {**definition, "hasUniqueValue": unique}, scope=f"crm.schemas.{object_type}.write")
                except Rejected as exc:
                    if exc.status == 409:  # it exists already, which is what we want
                        break
                    if exc.status == 400 and unique:
                        continue  # unique values refused on this object: a plain property
                    raise
                created.append(f"{object_type}.{self.key_property}")
                break
        return created

    def key_checks(self) -> list[tuple[bool, str]]:
        """(ok, message) per key property, for `sidecar check`: present, and how exactly-once is kept."""
        checks = []
        for object_type in KEY_OBJECTS:
            name = f"{object_type}.{self.key_property}"
            try:
                definition = self.api.call("general", "crm.properties.core_api", "get_by_name", object_type,
                                           self.key_property, scope=f"crm.schemas.{object_type}.read")
            except Rejected as exc:
                if exc.status != 404:
                    raise
                checks.append((False, f"{name}: missing; run `sidecar init --hubspot` to create it"))
                continue
            except PermanentError as exc:
                checks.append((False, f"{name}: cannot be read: {exc}"))
                continue
            if (definition or {}).get("hasUniqueValue"):
                checks.append((True, f"{name}: unique values enforced by HubSpot (a duplicate is refused)"))
            else:
                checks.append((True, f"{name}: not unique (HubSpot documents unique values for contacts, "
                                      "companies, deals, tickets and custom objects only); a retry searches "
                                      "by key before creating"))
        return checks

    # -- tasks and notes ---------------------------------------------------------------------------

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        return _one(self.create_tasks([(task, idempotency_key)]), idempotency_key)

    def create_tasks(self, items: Sequence[tuple[TaskRequest, str]],
                     unsent: Collection[str] = ()) -> Mapping[str, str | Exception]:
        """`BatchTaskWriter`: per key the id of its task (created now or found), or the error of that
        item alone. One batch create per 100 new keys (1,000 tasks: 10 calls), associations
        included, after one search per 100 keys for records an earlier attempt wrote; keys found are
        never updated (a task a rep completed stays completed). Raises only when nothing could be
        done (the first call failed as a whole: 429 after retries, token or scope problems)."""
        return self.creates.create_all("tasks", [(self._task_props(task), task.lead.crm_id, key)
                                                 for task, key in items], unsent)

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        return _one(self.add_notes([(note, idempotency_key)]), idempotency_key)

    def add_notes(self, items: Sequence[tuple[NoteRequest, str]],
                  unsent: Collection[str] = ()) -> Mapping[str, str | Exception]:
        """`BatchNoteWriter`: as `create_tasks`, for notes (batch creates of 100, associations inline,
        keys searched first so that a replay writes nothing)."""
        return self.creates.create_all("notes", [
            ({"hs_note_body": _with_link(note.body, note.lead.record_url), "hs_timestamp": str(epoch_ms(note.at))},
             note.lead.crm_id, key) for note, key in items], unsent)

    def _task_props(self, task: TaskRequest) -> dict[str, str]:
        return {"hs_timestamp": str(epoch_ms(task.due_at)), "hs_task_subject": task.subject,
                "hs_task_body": _with_link(task.body, task.lead.record_url),
                "hs_task_status": "NOT_STARTED", "hs_task_priority": PRIORITY[task.priority],
                "hs_task_type": self.task_type, "hubspot_owner_id": task.owner_id}

    def update_task(self, update: TaskUpdate, idempotency_key: str) -> str:
        """Re-own (`hubspot_owner_id`, and `hs_timestamp`, the task's due date, at the new owner's
        deadline) or close (`hs_task_status` COMPLETED) the task written under
        `update.task_key`, found by searching its key property (HubSpot reads by idProperty only on
        unique properties). The task was created at the lead's arrival, long before it changes hands,
        so the search index has it; if not yet, the update is retried later. A completed task is left
        as it is; a replay finds the change made and writes nothing."""
        task_id = self.creates.search("tasks", [update.task_key]).get(update.task_key)
        if task_id is None:
            # Its create may still be on its way (or retrying), or the index lags: try again later.
            raise TransientError(f"no HubSpot task carries key {update.task_key} yet", retry_after=60)
        record = self.api.call("general", "crm.objects.basic_api", "get_by_id", "tasks", task_id,
                               properties=["hs_task_status", "hubspot_owner_id"], scope="crm.objects.contacts.read")
        props = (record or {}).get("properties") or {}
        if props.get("hs_task_status") == "COMPLETED":
            return f"already closed:{task_id}"
        if update.close:
            values = {"hs_task_status": "COMPLETED"}
        elif update.new_owner_id and props.get("hubspot_owner_id") != update.new_owner_id:
            values = {"hubspot_owner_id": update.new_owner_id}
            if update.due_at is not None:  # hs_timestamp is the task's due date: the new owner's deadline
                values["hs_timestamp"] = str(epoch_ms(update.due_at))
        else:
            return f"owner:{update.new_owner_id}:{task_id}"
        self.api.call("general", "crm.objects.basic_api", "update", "tasks", task_id, {"properties": values},
                      scope=WRITE_SCOPE)
        return f"closed:{task_id}" if update.close else f"owner:{update.new_owner_id}:{task_id}"

    # -- owner change ------------------------------------------------------------------------------

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        """Re-read, compare, then PATCH: a human's newer change wins (HubSpot has no conditional
        update, so the window left is the few milliseconds between this read and the PATCH)."""
        owner_prop = self.fields.owner
        record = self.api.call("general", "crm.objects.basic_api", "get_by_id", self.fields.object,
                               change.lead.crm_id, properties=[owner_prop, self.fields.modified_property],
                               properties_with_history=[owner_prop])
        current = (record.get("properties") or {}).get(owner_prop) or None
        history: list[dict[str, Any]] = (record.get("propertiesWithHistory") or {}).get(owner_prop) or []
        verdict = judge(self.fields.object, change, current, history)
        if isinstance(verdict, Exception):
            raise verdict
        if verdict is not None:
            return  # our own earlier attempt (or the same decision by a human): done
        self.api.call("general", "crm.objects.basic_api", "update", self.fields.object, change.lead.crm_id,
                      {"properties": {owner_prop: change.to_owner_id}}, scope=WRITE_SCOPE)


    def change_owners(self, items: Sequence[tuple[OwnerChange, str]]) -> Mapping[str, str | Exception]:
        """`BatchOwnerWriter`: the same read-compare-write, 50 reads and 100 writes a call (owners.py)."""
        return self.owners.change_owners(items)

    # -- status and tags ---------------------------------------------------------------------------

    def update_lead(self, update: LeadUpdate, idempotency_key: str) -> None:
        """Re-read, compare, then PATCH only what differs (a replay writes nothing). A status a person
        set since the decision stands when `expect_status` says which status we meant to replace
        (ConflictError). The reason goes into the `status_reason` property when configured (the
        core also writes it as a note); tags are added to the `tags` multiple-checkbox property,
        keeping the values it has: HubSpot takes several checkbox values as one ";"-separated string and
        refuses values that are not options of the property (developers.hubspot.com FAQ "How do I set
        multiple values for checkbox properties?"; changelog 2023-05 "increased validation for contact
        updates")."""
        lead_id = update.lead.crm_id
        status_prop, tags_prop = self.fields.status, self.fields.tags
        record = self.api.call("general", "crm.objects.basic_api", "get_by_id", self.fields.object, lead_id,
                               properties=[p for p in (status_prop, tags_prop) if p])
        props: dict[str, Any] = record.get("properties") or {}
        values: dict[str, str] = {}
        status = props.get(status_prop) or None
        if update.crm_status is not None and status != update.crm_status:
            if update.expect_status is not None and status != update.expect_status:
                raise ConflictError(f"HubSpot {self.fields.object} {lead_id}: {status_prop} is {status!r}, not "
                                    f"{update.expect_status!r}; a person changed it since, so it stays")
            values[status_prop] = update.crm_status
            if update.reason and self.fields.status_reason:
                values[self.fields.status_reason] = update.reason
        if update.add_tags:
            if not tags_prop:
                raise PermanentError("cannot tag the lead: set properties.tags in config/hubspot.fields.yaml to a "
                                     "multiple-checkbox property with the options " + ", ".join(update.add_tags))
            have = [tag for tag in str(props.get(tags_prop) or "").split(";") if tag]
            if any(tag not in have for tag in update.add_tags):
                values[tags_prop] = ";".join([*have, *(t for t in update.add_tags if t not in have)])
        if values:
            self.api.call("general", "crm.objects.basic_api", "update", self.fields.object, lead_id,
                          {"properties": values}, scope=WRITE_SCOPE)


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
