"""SalesforceWriter: tasks, breach notes and conditional owner changes, each exactly once.

Idempotency: every Task we create carries its outbox key, in the custom field `key_field`
(default Sidecar_Key__c; make it a Unique External ID) and as a `[sidecar:<key>]` line at the end
of Description.

Tasks are written with the sObject Collections upsert keyed by that field
(`PATCH composite/sobjects/Task/<key_field>`, API 46.0+, up to 200 records a call, per-record
results with `created`): a key the org has not seen creates the task, a key it has (a retry after a
crash between the write and marking the outbox row done) matches the existing task instead of
making a second one, so the lookup before the create disappears: 1,000 tasks = 5 calls, one task = 1.

An upsert that matches updates the task with the fields sent, so a replay must not send anything
that would undo a rep's work since: we leave out Status (Salesforce defaults it on create, so a task
the rep has completed stays completed) and TaskSubtype (create-only on Task). The other fields are
re-sent with the very values of the first attempt; a rep's edit to those (owner, due date, priority,
reminder, text) between a crash and its retry would be reverted. That window is the outbox's
retry delay, and the price of avoiding it is a lookup per 200 keys on every batch.

Fallbacks, switched on by themselves the first time Salesforce refuses:
- the field exists but is not an External ID (or the API version predates 46.0): look the keys up
  (one SOQL IN query per chunk of keys), then create the rest with composite/sobjects (POST, 200 a
  call): 1,000 new tasks = 5 creates + the lookups (2 with the default chunking);
- the field does not exist: the key lives only in the Description marker line. Description is a
  Long Text Area, which SOQL cannot filter ("can not be filtered in query call": no LIKE on it), so
  the writer reads every Task of the leads concerned (WhoId IN, an indexed lookup; ~400 leads a
  query) with their Description and matches the marker in Python. Correct whatever the retry delay,
  but slower (a lead's whole task history is read), and a user who edits the line away defeats it.
  `sidecar check` says how to create the field. (A marker in Subject, which is filterable, would
  clutter what reps read and be cut by its 255 characters.)

Breach notes in batches (`add_notes`) are upserted the same way (Status Completed is sent: a note is
born completed); a single note keeps lookup-then-create.

Status and tags (lead_updates.py): read, then PATCH only what differs; a person's newer status stands.

Owner changes (owners.py) are conditional: the current OwnerId is read and must still be the owner
our decision saw, and the lead unmodified since; a human change in the meantime wins
(ConflictError). One at a time with If-Unmodified-Since on the PATCH; many with one sObject
Collections retrieve per 2,000 leads and an update per 200.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError

from connectors.salesforce import lead_updates, owners, queries
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.collections_api import RECORDS_MAX, RETRYABLE_RECORD_CODES, record_errors, restful
from connectors.salesforce.datetimes import api_datetime
from connectors.salesforce.errors import error_code, translate
from connectors.salesforce.fields import FieldMap
from connectors.salesforce.owners import same_id
from sidecar.domain import Crm
from sidecar.ports import (
    LeadContext,
    LeadUpdate,
    NoteRequest,
    OwnerChange,
    PermanentError,
    TaskRequest,
    TaskUpdate,
    TransientError,
)

log = logging.getLogger(__name__)
COMPOSITE_MAX = RECORDS_MAX
UPSERT_MIN_VERSION = (46, 0)
NOTE_SUBJECT = "SLA breach note"
CLOSED_STATUS = "Completed"  # the standard closed Task status; update_task closes with it
_PRIORITY = {"high": "High", "normal": "Normal", "low": "Low"}
# Left out of an upsert, see the module docstring: Status so a replay never reopens a completed task,
# TaskSubtype because Task lets it be set on create only (an update naming it would be refused).
_NOT_ON_UPSERT = ("Status", "TaskSubtype")
# A concurrent writer got the key in first (or an org already holds it twice): read it back by key.
_DUPLICATE_CODES = frozenset({"DUPLICATE_VALUE", "DUPLICATE_EXTERNAL_ID"})

TaskResults = dict[str, str | Exception]
Activity = TaskRequest | NoteRequest  # both are written as Task records
RecordFields = Callable[[Any, str], dict[str, Any]]


def _query_all(soql: str, sf: Salesforce) -> Any:
    return sf.query_all(soql)


def _describe(lead: LeadContext, body: str, key: str) -> str:
    who = f"{lead.name} ({lead.company})" if lead.company else lead.name
    link = f"Open in Salesforce: {lead.record_url}"
    return f"{body}\n\nLead: {who}, state {lead.state}\n{link}\n{queries.marker(key)}"


def _version_at_least(version: str, wanted: tuple[int, int]) -> bool:
    try:
        major, minor = (int(part) for part in version.split(".", 1))
    except ValueError:
        return False
    return (major, minor) >= wanted


def _record_failure(answer: Any) -> tuple[set[str], Exception]:
    """The error codes and the port-level error of one failed per-record result."""
    codes, text = record_errors(answer)
    if codes & RETRYABLE_RECORD_CODES:
        return codes, TransientError(f"Salesforce could not write the task now: {text}")
    return codes, PermanentError(f"Salesforce refused the task: {text or repr(answer)[:200]}")


class SalesforceWriter:
    crm = Crm.SALESFORCE

    def __init__(self, client: SalesforceClient, fields: FieldMap | None = None) -> None:
        self.client = client
        self.fields = fields or FieldMap()
        self.key_field = self.fields.key_field
        # Switched off for good when the org refuses the upsert (field not an External ID, old API).
        self.upsert = _version_at_least(client.version, UPSERT_MIN_VERSION)

    def api_usage(self) -> tuple[int, int] | None:
        return self.client.api_usage()

    # --- tasks and notes --------------------------------------------------------------------------------

    def task_fields(self, task: TaskRequest, key: str) -> dict[str, Any]:
        due = self._due_fields(task.due_at, task.due_tz)
        values: dict[str, Any] = {
            "WhoId": task.lead.crm_id, "OwnerId": task.owner_id, "Subject": task.subject[:255],
            "Description": _describe(task.lead, task.body, key), "ActivityDate": due.pop("ActivityDate"),
            "Priority": _PRIORITY[task.priority], "Status": "Not Started", "TaskSubtype": "Task", **due,
        }
        return self._keyed(values, key)

    def _due_fields(self, due_at: datetime, due_tz: str | None) -> dict[str, Any]:
        """A task's due date (ActivityDate is a date without zone: the date as the lead's market
        reads it, so a 20:00 New York deadline is not tomorrow) and, when the org uses reminders,
        the reminder at the due instant. Creation and re-owning write the same."""
        values: dict[str, Any] = {
            "ActivityDate": due_at.astimezone(ZoneInfo(due_tz) if due_tz else UTC).date().isoformat()}
        if self.fields.reminders:
            values.update(ReminderDateTime=api_datetime(due_at), IsReminderSet=True)
        return values

    def upsert_fields(self, task: TaskRequest, key: str) -> dict[str, Any]:
        """What an upsert sends: only values that are the same on every replay of the key and that
        leave the rep's progress alone (see `_NOT_ON_UPSERT`)."""
        values = self.task_fields(task, key)
        for name in _NOT_ON_UPSERT:
            values.pop(name, None)
        return values

    def note_fields(self, note: NoteRequest, key: str) -> dict[str, Any]:
        values: dict[str, Any] = {
            "WhoId": note.lead.crm_id, "Subject": NOTE_SUBJECT, "Status": "Completed", "TaskSubtype": "Task",
            "Description": _describe(note.lead, note.body, key), "Priority": "Normal",
            "ActivityDate": note.at.astimezone(UTC).date().isoformat(),
        }
        if note.lead.owner_id and note.lead.owner_id.startswith("005"):  # a queue cannot own a Task
            values["OwnerId"] = note.lead.owner_id
        return self._keyed(values, key)

    def _keyed(self, values: dict[str, Any], key: str) -> dict[str, Any]:
        return {**values, self.key_field: key} if self.key_field else values

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        if self.key_field and self.upsert:
            upserted = self._upsert_tasks(self.key_field, [(idempotency_key, task)])  # 1 call, no lookup
            if upserted is not None:
                result = upserted[idempotency_key]
                if isinstance(result, Exception):
                    raise result
                return result
        return self._create_once(idempotency_key, task.lead.crm_id,
                                 lambda: self.task_fields(task, idempotency_key))

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        """A breach note is a completed Task (visible in the activity timeline, no extra licence).
        One note: lookup-then-create, as it always was; many: `add_notes`."""
        return self._create_once(idempotency_key, note.lead.crm_id,
                                 lambda: self.note_fields(note, idempotency_key))

    def note_upsert_fields(self, note: NoteRequest, key: str) -> dict[str, Any]:
        """A note's upsert: its Status (Completed) is sent, unlike a task's: a note is born completed,
        so a replay that matches it only keeps it so. TaskSubtype is create-only (left out)."""
        values = self.note_fields(note, key)
        values.pop("TaskSubtype", None)
        return values

    def add_notes(self, items: Sequence[tuple[NoteRequest, str]],
                  unsent: Collection[str] = ()) -> Mapping[str, str | Exception]:
        """`BatchNoteWriter`: notes as tasks are written, upserted by key 200 a call (1,000 notes =
        5 calls; a replay matches the note written before), with the same fallbacks. Per key the
        note's id or that note's own error; raises only when nothing was written."""
        wanted: dict[str, NoteRequest] = {}
        for note, key in items:
            wanted.setdefault(key, note)
        if not wanted:
            return {}
        if self.key_field and self.upsert:
            upserted = self._upsert_tasks(self.key_field, list(wanted.items()), self.note_upsert_fields)
            if upserted is not None:
                return upserted
        return self._create_after_lookup(wanted, self.note_fields, unsent)

    def find_task(self, key: str, lead_id: str) -> str | None:
        """Our earlier task for this key (on this lead), or None."""
        return self._find_tasks({key: lead_id}).get(key)

    def _find_tasks(self, keys: Mapping[str, str]) -> dict[str, str]:
        """Existing task ids by key (`keys`: key -> lead id): IN chunks on the key field, or, without
        one, every Task of those leads with the marker looked for in Description."""
        if not self.key_field:
            return self._find_by_marker(keys)
        key_field = self.key_field
        found: dict[str, str] = {}
        try:
            for soql in queries.tasks_by_keys(key_field, list(keys)):
                rows = self.client.raw(partial(_query_all, soql))["records"]
                found.update({str(r[key_field]): str(r["Id"]) for r in rows})
        except SalesforceError as exc:
            if error_code(exc) != "INVALID_FIELD":
                raise translate(exc) from exc
            log.warning("Task.%s does not exist; falling back to Description markers (slower: create the "
                        "field as a Unique External ID, see `sidecar check`)", key_field)
            self.key_field = None
            return self._find_tasks(keys)
        except Exception as exc:
            raise translate(exc) from exc
        return found

    def _find_by_marker(self, keys: Mapping[str, str]) -> dict[str, str]:
        """Description is a Long Text Area: SOQL refuses it in WHERE (no LIKE), so the Tasks of the
        leads concerned are read (WhoId IN, indexed; one query per ~400 leads) and the
        `[sidecar:<key>]` line is matched here."""
        by_lead: dict[str, list[str]] = {}
        for key, lead_id in keys.items():
            by_lead.setdefault(lead_id[:15], []).append(key)
        found: dict[str, str] = {}
        try:
            for soql in queries.tasks_of_leads(sorted({lead_id for lead_id in keys.values()})):
                for row in self.client.raw(partial(_query_all, soql))["records"]:
                    description = str(row.get("Description") or "")
                    for key in by_lead.get(str(row.get("WhoId") or "")[:15], []):
                        if key not in found and queries.marker(key) in description:
                            found[key] = str(row["Id"])
        except (SalesforceError, requests.RequestException) as exc:
            raise translate(exc) from exc
        return found

    def _create_once(self, key: str, lead_id: str, values: Any) -> str:
        existing = self.find_task(key, lead_id)
        if existing is not None:
            return existing  # a retry after a crash between create and marking the outbox row done
        try:
            created = self.client.raw(lambda sf: sf.restful("sobjects/Task", method="POST", json=values()))
        except SalesforceError as exc:
            if error_code(exc) == "DUPLICATE_VALUE":  # a concurrent dispatcher won the race
                found = self.find_task(key, lead_id)
                if found is not None:
                    return found
            raise translate(exc) from exc
        except Exception as exc:
            raise translate(exc) from exc
        if not created or "id" not in created:
            raise PermanentError(f"Salesforce answered a Task create without an id: {created!r:.200}")
        return str(created["id"])

    def create_tasks(self, items: Sequence[tuple[TaskRequest, str]],
                     unsent: Collection[str] = ()) -> Mapping[str, str | Exception]:
        """`BatchTaskWriter`: per idempotency key the task id (created or found) or the error of that
        item alone. Raises only when the whole call failed (nothing was written: e.g. the first
        request answered 5xx/429, or the session could not be renewed). A failure after some
        chunks went through is reported as the value of each key not yet written."""
        wanted: dict[str, TaskRequest] = {}
        for task, key in items:
            wanted.setdefault(key, task)  # one key, one task: the first request for it counts
        if not wanted:
            return {}
        if self.key_field and self.upsert:
            upserted = self._upsert_tasks(self.key_field, list(wanted.items()))
            if upserted is not None:
                return upserted
        return self._create_after_lookup(wanted, self.task_fields, unsent)

    def _send_chunks(self, path: str, method: str, todo: Sequence[tuple[str, Activity]],
                     record: RecordFields, results: TaskResults) -> list[tuple[str, Any]] | None:
        """POST/PATCH `todo` in chunks of 200; (key, per-record answer) pairs in order. Whole-call
        failures raise when nothing was written yet, else become the value of the unsent keys.
        None when the first call is refused in a way that means the resource cannot be used."""
        answered: list[tuple[str, Any]] = []
        for start in range(0, len(todo), COMPOSITE_MAX):
            chunk = todo[start:start + COMPOSITE_MAX]
            body = {"allOrNone": False,
                    "records": [{"attributes": {"type": "Task"}, **record(task, key)} for key, task in chunk]}
            try:
                answers = self.client.raw(partial(restful, path, method, body, self.client.timeout))
            except (SalesforceError, requests.RequestException) as exc:
                if (not answered and method == "PATCH" and isinstance(exc, SalesforceError)
                        and (exc.status == 404 or error_code(exc) == "INVALID_FIELD")):
                    return None
                failure = translate(exc)
                if not answered and not results:
                    raise failure from exc
                results.update(dict.fromkeys((key for key, _task in todo[start:]), failure))
                return answered
            if not isinstance(answers, list) or len(answers) != len(chunk):
                failure = TransientError(f"Salesforce answered {len(answers or [])} results for {len(chunk)} tasks")
                results.update(dict.fromkeys((key for key, _task in chunk), failure))
                continue
            answered.extend((key, answer) for (key, _task), answer in zip(chunk, answers, strict=True))
        return answered

    def _settle(self, answered: Sequence[tuple[str, Any]], results: TaskResults,
                leads: Mapping[str, str]) -> TaskResults:
        """Per-record answers into results; keys another writer got in first are read back by key."""
        racing: dict[str, Exception] = {}
        for key, answer in answered:
            if isinstance(answer, dict) and answer.get("success") and answer.get("id"):
                results[key] = str(answer["id"])
                continue
            codes, failure = _record_failure(answer)
            results[key] = failure
            if codes & _DUPLICATE_CODES:
                racing[key] = failure
        if racing:  # rare (a concurrent dispatcher, or duplicates left by an earlier fallback)
            try:
                results.update(self._find_tasks({key: leads[key] for key in racing}))
            except (TransientError, PermanentError) as exc:
                # The writes are done; only these keys are unresolved: let them retry the read.
                results.update(dict.fromkeys(racing, TransientError(f"could not read the task back: {exc}")))
        return results

    def _upsert_tasks(self, key_field: str, todo: Sequence[tuple[str, Activity]],
                      record: RecordFields | None = None) -> TaskResults | None:
        """Upsert by the key field, 200 a call. None (and upsert off) when the org refuses it."""
        results: TaskResults = {}
        path = f"composite/sobjects/Task/{key_field}"
        answered = self._send_chunks(path, "PATCH", todo, record or self.upsert_fields, results)
        if answered is None:
            log.warning("Salesforce refused the upsert on Task.%s (not an External ID, or API < 46.0); "
                        "looking keys up before creating instead", key_field)
            self.upsert = False
            return None
        return self._settle(answered, results, {key: task.lead.crm_id for key, task in todo})

    def _create_after_lookup(self, wanted: Mapping[str, Activity], record: RecordFields,
                             unsent: Collection[str] = ()) -> TaskResults:
        """Fallback: keys looked up (IN chunks, or per key by marker; not those never sent before),
        then creates in 200s."""
        leads = {key: task.lead.crm_id for key, task in wanted.items()}
        sent = {key: lead for key, lead in leads.items() if key not in unsent}
        results: TaskResults = dict(self._find_tasks(sent)) if sent else {}
        todo = [(key, task) for key, task in wanted.items() if key not in results]
        answered = self._send_chunks("composite/sobjects", "POST", todo, record, results)
        return self._settle(answered or [], results, leads)

    def update_task(self, update: TaskUpdate, idempotency_key: str) -> str:
        """Re-own (OwnerId, and the due date and reminder of the new owner's deadline, written as
        creation writes them) or close (Status Completed) the task written under `update.task_key`, found
        by its key like a replayed create; a task the rep already closed is left as it is. Three calls:
        find by key, read owner and IsClosed, PATCH. A replay finds the change made and writes nothing."""
        lead_id = update.lead.crm_id
        task_id = self.find_task(update.task_key, lead_id)
        if task_id is None:
            # Its create may still be on its way (or retrying): try again later, then dead-letter.
            raise TransientError(f"no Salesforce Task carries key {update.task_key} yet")
        current = self.client.rest("GET", f"sobjects/Task/{task_id}", params={"fields": "OwnerId,IsClosed"}) or {}
        if current.get("IsClosed"):
            return f"already closed:{task_id}"
        if update.close:
            values: dict[str, Any] = {"Status": CLOSED_STATUS}
        elif update.new_owner_id and not same_id(str(current.get("OwnerId") or ""), update.new_owner_id):
            values = {"OwnerId": update.new_owner_id}
            if update.due_at is not None:  # the new owner's deadline, not the old (often past) one
                values.update(self._due_fields(update.due_at, update.due_tz))
        else:
            return f"owner:{update.new_owner_id}:{task_id}"
        self.client.rest("PATCH", f"sobjects/Task/{task_id}", json=values)
        return f"closed:{task_id}" if update.close else f"owner:{update.new_owner_id}:{task_id}"

    # --- owner ------------------------------------------------------------------------------------------

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        """Read-compare, then PATCH with If-Unmodified-Since: a human's newer change wins (owners.py)."""
        owners.change_owner(self.client, change)

    def change_owners(self, items: Sequence[tuple[OwnerChange, str]]) -> Mapping[str, str | Exception]:
        """`BatchOwnerWriter`: one retrieve per 2,000 leads, then updates of 200 (owners.py)."""
        return owners.change_owners(self.client, items)

    # --- status and tags ---------------------------------------------------------------------------------

    def update_lead(self, update: LeadUpdate, idempotency_key: str) -> None:
        """Read Status (and the tags field), then PATCH only what differs: a person's newer status
        stands (lead_updates.py)."""
        lead_updates.update_lead(self.client, self.fields, update)
