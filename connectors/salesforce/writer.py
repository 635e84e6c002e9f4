"""SalesforceWriter: tasks, breach notes and conditional owner changes, each exactly once.

Idempotency: every Task we create carries its outbox key, in the custom field `key_field`
(default Sidecar_Key__c; make it a unique External ID so a racing duplicate is refused) and as a
`[sidecar:<key>]` line at the end of Description. Before creating we look the key up. Orgs without
the field fall back to finding the marker with `Description LIKE`: that works anywhere but is a
non-indexed scan and a user could edit the line away, so the field is recommended. The fallback
switches on by itself the first time Salesforce says the field does not exist.

Owner changes are conditional (If-Unmodified-Since = the modification time our decision saw): a
human change in the meantime wins and surfaces as ConflictError.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import format_datetime
from functools import partial
from typing import Any

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError

from connectors.salesforce import queries
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.errors import error_code, translate
from connectors.salesforce.fields import FieldMap
from sidecar.domain import Crm
from sidecar.ports import ConflictError, LeadContext, NoteRequest, OwnerChange, PermanentError, TaskRequest

log = logging.getLogger(__name__)
COMPOSITE_MAX = 200
NOTE_SUBJECT = "SLA breach note"
_PRIORITY = {"high": "High", "normal": "Normal", "low": "Low"}


@dataclass
class BatchResult:
    created: dict[str, str] = field(default_factory=dict)  # key -> Task id (new or found)
    failed: dict[str, Exception] = field(default_factory=dict)  # key -> PermanentError/TransientError


def _query_all(soql: str, sf: Salesforce) -> Any:
    return sf.query_all(soql)


def _same_id(a: str | None, b: str | None) -> bool:
    # 15- and 18-character forms of one id share the first 15 characters (case-sensitive).
    return bool(a and b and a[:15] == b[:15])


def _describe(lead: LeadContext, body: str, key: str) -> str:
    who = f"{lead.name} ({lead.company})" if lead.company else lead.name
    link = f"Open in Salesforce: {lead.record_url}"
    return f"{body}\n\nLead: {who}, state {lead.state}\n{link}\n{queries.marker(key)}"


class SalesforceWriter:
    crm = Crm.SALESFORCE

    def __init__(self, client: SalesforceClient, fields: FieldMap | None = None) -> None:
        self.client = client
        self.fields = fields or FieldMap()
        self.key_field = self.fields.key_field

    def api_usage(self) -> tuple[int, int] | None:
        return self.client.api_usage()

    # --- tasks and notes --------------------------------------------------------------------------------

    def task_fields(self, task: TaskRequest, key: str) -> dict[str, Any]:
        values: dict[str, Any] = {
            "WhoId": task.lead.crm_id, "OwnerId": task.owner_id, "Subject": task.subject[:255],
            "Description": _describe(task.lead, task.body, key),
            "ActivityDate": task.due_at.astimezone(UTC).date().isoformat(),
            "Priority": _PRIORITY[task.priority], "Status": "Not Started", "TaskSubtype": "Task",
        }
        if self.fields.reminders:
            values.update(ReminderDateTime=task.due_at.astimezone(UTC).isoformat(), IsReminderSet=True)
        return self._keyed(values, key)

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
        return self._create_once(idempotency_key, lambda: self.task_fields(task, idempotency_key))

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        """A breach note is a completed Task (visible in the activity timeline, no extra licence)."""
        return self._create_once(idempotency_key, lambda: self.note_fields(note, idempotency_key))

    def find_task(self, key: str) -> str | None:
        try:
            rows = self.client.raw(lambda sf: sf.query(queries.task_by_key(self.key_field, key)))["records"]
        except SalesforceError as exc:
            if self.key_field and error_code(exc) == "INVALID_FIELD":
                log.warning("Task.%s does not exist; falling back to Description markers", self.key_field)
                self.key_field = None
                return self.find_task(key)
            raise translate(exc) from exc
        except Exception as exc:
            raise translate(exc) from exc
        return str(rows[0]["Id"]) if rows else None

    def _find_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        """Existing task ids by key: IN chunks on the key field, or one LIKE query per key."""
        if not self.key_field:
            pairs = ((key, self.find_task(key)) for key in keys)
            return {key: task_id for key, task_id in pairs if task_id is not None}
        key_field = self.key_field
        found: dict[str, str] = {}
        try:
            for soql in queries.tasks_by_keys(key_field, keys):
                rows = self.client.raw(partial(_query_all, soql))["records"]
                found.update({str(r[key_field]): str(r["Id"]) for r in rows})
        except SalesforceError as exc:
            if error_code(exc) != "INVALID_FIELD":
                raise translate(exc) from exc
            log.warning("Task.%s does not exist; falling back to Description markers", key_field)
            self.key_field = None
            return self._find_tasks(keys)
        except Exception as exc:
            raise translate(exc) from exc
        return found

    def _create_once(self, key: str, values: Any) -> str:
        existing = self.find_task(key)
        if existing is not None:
            return existing  # a retry after a crash between create and marking the outbox row done
        try:
            created = self.client.raw(lambda sf: sf.restful("sobjects/Task", method="POST", json=values()))
        except SalesforceError as exc:
            if error_code(exc) == "DUPLICATE_VALUE":  # a concurrent dispatcher won the race
                found = self.find_task(key)
                if found is not None:
                    return found
            raise translate(exc) from exc
        except Exception as exc:
            raise translate(exc) from exc
        if not created or "id" not in created:
            raise PermanentError(f"Salesforce answered a Task create without an id: {created!r:.200}")
        return str(created["id"])

    def create_tasks(self, tasks: Sequence[tuple[TaskRequest, str]]) -> BatchResult:
        """Bulk path: keys looked up in IN chunks, then composite/sobjects in 200s (allOrNone false,
        so one bad record fails alone). 1,000 tasks = 5 composite calls + the key lookups."""
        result = BatchResult()
        wanted = dict((key, task) for task, key in tasks)
        result.created.update(self._find_tasks(list(wanted)))
        todo = [(key, task) for key, task in wanted.items() if key not in result.created]
        for start in range(0, len(todo), COMPOSITE_MAX):
            chunk = todo[start:start + COMPOSITE_MAX]
            records = [{"attributes": {"type": "Task"}, **self.task_fields(task, key)} for key, task in chunk]
            body = {"allOrNone": False, "records": records}
            answers = self.client.rest("POST", "composite/sobjects", json=body)
            for (key, _task), answer in zip(chunk, answers, strict=True):
                if answer.get("success"):
                    result.created[key] = str(answer["id"])
                else:
                    errors = answer.get("errors", [])
                    text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
                    result.failed[key] = PermanentError(f"Salesforce refused the task: {text}")
        return result

    # --- owner ------------------------------------------------------------------------------------------

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        lead_id = change.lead.crm_id
        since = format_datetime(change.seen_modified_at.astimezone(UTC), usegmt=True)
        try:
            self.client.raw(lambda sf: sf.restful(f"sobjects/Lead/{lead_id}", method="PATCH",
                                                  json={"OwnerId": change.to_owner_id},
                                                  headers={"If-Unmodified-Since": since}))
            return
        except SalesforceError as exc:
            if exc.status != 412:
                raise translate(exc) from exc
        except Exception as exc:
            raise translate(exc) from exc
        current = self.client.rest("GET", f"sobjects/Lead/{lead_id}", params={"fields": "OwnerId"})
        owner = current.get("OwnerId") if current else None
        if _same_id(owner, change.to_owner_id):
            return  # our own earlier write, retried: the lead already has the owner we wanted
        raise ConflictError(f"lead {lead_id} changed in Salesforce after {since}; it is now owned by "
                            f"{owner}, so the reassignment was not made")
