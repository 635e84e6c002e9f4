"""Test and demo side of the Salesforce emulator: seeding users, queues and records without HTTP,
simulating edits by people and automation, inspecting the org, and driving Outbound Messages.
Mixed into `SalesforceEmulator`; none of it goes through the API, so none of it counts against the
daily request limit.
"""

from __future__ import annotations

from typing import Any

import requests

from connectors.emulators.salesforce_base import SalesforceBase
from connectors.emulators.salesforce_login import Credentials
from connectors.emulators.salesforce_outbound import Trigger


class SalesforceHelpers(SalesforceBase):
    # Provided by SalesforceEmulator.
    uncommitted: list[tuple[str, dict[str, Any]]]

    def add_user(self, first_name: str, last_name: str, *, username: str | None = None,
                 email: str | None = None, is_active: bool = True, password: str | None = None,
                 security_token: str = "", **fields: Any) -> str:
        with self.lock:
            username = username or f"{first_name}.{last_name}@example.com".lower()
            values = {"FirstName": first_name, "LastName": last_name, "Username": username,
                      "Email": email or username, "IsActive": is_active, **fields}
            clean = self.store.validate("User", values, creating=True, system=True)
            user_id = self.store.apply_create("User", clean, self.integration_user_id)
            if password is not None:
                self.logins.credentials[username] = Credentials(password, security_token, user_id)
            return user_id

    def add_queue(self, name: str, *, developer_name: str | None = None, email: str | None = None) -> str:
        with self.lock:
            values = {"Name": name, "DeveloperName": developer_name or name.replace(" ", "_"),
                      "Type": "Queue", "Email": email}
            clean = self.store.validate("Group", values, creating=True, system=True)
            return self.store.apply_create("Group", clean, self.integration_user_id)

    def add_connected_app(self, client_id: str, client_secret: str) -> None:
        with self.lock:
            self.logins.apps[client_id] = client_secret

    def add_field(self, sobject: str, name: str, ftype: str, *, external_id: bool = False,
                  unique: bool = False) -> None:
        """A custom field, optionally an External ID (can key an upsert) and/or Unique."""
        with self.lock:
            self.store.add_field(sobject, name, ftype, external_id=external_id, unique=unique)

    def issue_token(self, user_id: str | None = None) -> str:
        with self.lock:
            return self.logins.issue(user_id or self.integration_user_id)

    def expire_sessions(self) -> None:
        with self.lock:
            self.logins.tokens.clear()

    def insert(self, sobject: str, fields: dict[str, Any], *, actor: str | None = None) -> str:
        """Create a record in system mode: read-only fields such as CreatedDate may be backdated."""
        with self.lock:
            clean = self.store.validate(sobject, fields, creating=True, system=True)
            return self.store.apply_create(sobject, clean, actor or self.integration_user_id)

    def insert_uncommitted(self, sobject: str, fields: dict[str, Any], *, actor: str | None = None) -> str:
        """Fault: a row written inside a long transaction. It is stamped now (SystemModstamp is set
        at write time) but no query, read or Bulk job sees it until `commit_pending()`, which may
        come after polls have moved their cursors past its stamp."""
        with self.lock:
            listeners, self.store.listeners = self.store.listeners, []  # notified on commit
            try:
                record_id = self.insert(sobject, fields, actor=actor)
            finally:
                self.store.listeners = listeners
            self.uncommitted.append((sobject, self.store.tables[sobject].pop(record_id)))
            return record_id

    def commit_pending(self) -> list[str]:
        """Make the rows of `insert_uncommitted` visible, with the stamps they were written with."""
        with self.lock:
            done = []
            for sobject, record in self.uncommitted:
                self.store.tables[sobject][record["Id"]] = record
                self.store.notify(sobject, None, record)
                done.append(str(record["Id"]))
            self.uncommitted.clear()
            return done

    def add_task_status(self, status: str, *, closed: bool) -> None:
        """A Task Status picklist value; `closed` ones set IsClosed like Completed does."""
        with self.lock:
            if closed:
                self.store.closed_task_statuses.add(status)
            else:
                self.store.closed_task_statuses.discard(status)

    def update_as_user(self, sobject: str, record_id: str, fields: dict[str, Any],
                       user_id: str | None = None) -> None:
        """An edit by a person in the UI: LastModifiedDate, SystemModstamp and history all move."""
        with self.lock:
            clean = self.store.validate(sobject, fields, creating=False, record_id=record_id)
            self.store.apply_update(sobject, record_id, clean, user_id or self.integration_user_id)

    def system_update(self, sobject: str, record_id: str, fields: dict[str, Any] | None = None) -> None:
        """A change by automation: only SystemModstamp moves."""
        with self.lock:
            clean = self.store.validate(sobject, fields or {}, creating=False, system=True, record_id=record_id)
            self.store.apply_update(sobject, record_id, clean, self.integration_user_id, user_change=False)

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            record = self.store.get(sobject, record_id, include_deleted=True)
            return dict(record) if record is not None else None

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.store.tables[sobject].values()
            return [dict(r) for r in rows if include_deleted or not r["IsDeleted"]]

    def export(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            names = ("Lead", "Task", "Event", "LeadHistory")
            return {name: self.records(name, include_deleted=True) for name in names}

    @property
    def api_usage(self) -> tuple[int, int]:
        return self.api_calls_used, self.daily_limit

    def set_daily_limit(self, limit: int) -> None:
        with self.lock:
            self.daily_limit = limit

    def reset_api_usage(self) -> None:
        with self.lock:
            self.api_calls_used = 0

    def set_api_usage(self, used: int) -> None:
        """Calls counted against the daily limit, as if other integrations of the org had made them."""
        with self.lock:
            self.api_calls_used = max(0, used)

    def configure_outbound(self, url: str, org_id: str | None = None, fields: list[str] | None = None,
                           trigger: Trigger | str = "on lead change") -> None:
        with self.lock:
            chosen = fields or ["Id", "OwnerId", "Status"]
            self.outbound.configure(url, org_id or self.org_id, chosen, trigger)

    def deliver_outbound(self, session: requests.Session | None = None) -> int:
        # Not under the lock: the listener may call back into this emulator while we wait for it.
        return self.outbound.deliver(session)

    def pending_outbound(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.outbound.describe_pending()
