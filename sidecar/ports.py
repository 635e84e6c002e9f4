"""The narrow interfaces through which the core meets CRMs and Slack.

Connectors implement these; the engine and dispatcher only ever see these types. Requests are
plain frozen dataclasses so that they can sit in the outbox as JSON (see `outbox.py`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sidecar.domain import Crm, LeadSnapshot, Persona


class TransientError(Exception):
    """Worth retrying (timeouts, 5xx, rate limits). `retry_after` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help; the message tells the admin what to fix (shown in `sidecar status`)."""


class ConflictError(Exception):
    """The CRM record changed after we decided (e.g. a human changed the owner): the human wins."""


@dataclass(frozen=True)
class LeadContext:
    """What a message or task says about a lead: who, from where, in which state, and a link."""

    crm: Crm
    crm_id: str
    name: str
    company: str
    market: str | None
    source: str | None
    intent: str | None
    state: str
    owner_id: str | None
    owner_name: str | None
    record_url: str
    email: str = ""


# How a policy route reaches people. A person's own chat (one recipient, by e-mail) or a shared
# channel; which chat system carries it is the route's (or the team's, see engine.patterns.shared)
# choice, and `sidecar.notify_routes` hands each route to the notifier wired for it.
Via = Literal["slack_dm", "team_channel", "channel", "teams_chat", "teams_channel"]
PERSONAL_ROUTES: frozenset[str] = frozenset({"slack_dm", "teams_chat"})


@dataclass(frozen=True)
class Notification:
    kind: str  # the audit kind that caused it, e.g. sla_breach_imminent
    persona: Persona
    via: Via
    lead: LeadContext
    rule_id: str
    policy_version: str
    at: datetime  # decision instant
    due_at: datetime  # when the SLA breaches (or breached)
    elapsed_business_s: float
    window_s: int
    tz: str  # recipient team's market time zone, for times shown in the message
    recipient_email: str | None = None  # for personal routes (DMs, Teams chats)
    recipient_name: str | None = None
    # Team or configured channel; for teams_channel the NAME of the env var holding the workflow URL
    # (outbox rows are stored and shown: a signed URL must never be in them).
    channel: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. new owner, reassignment reason
    urgent: bool = True  # breaches and reassignments; warnings may be held for quiet hours or digested
    reassignment: bool = False  # this decision gave the lead to another rep: the team lead may revert it

    @property
    def recipient(self) -> str:
        """Who reads it: a person's e-mail for DMs, else the channel (noise control counts per recipient)."""
        return (self.recipient_email or "") if self.via in PERSONAL_ROUTES else (self.channel or "")


@dataclass(frozen=True)
class TaskRequest:
    lead: LeadContext
    owner_id: str
    subject: str
    body: str
    due_at: datetime
    priority: Literal["high", "normal", "low"] = "normal"
    due_tz: str | None = None  # the lead market's time zone: a CRM's due *date* is the date there


# Idempotency keys of first-response tasks start with this (see engine.patterns.keys): a connector
# that reads a closed task carrying such a key reports it as ProgressKind.FIRST_RESPONSE_TASK_COMPLETED.
FIRST_RESPONSE_TASK_PREFIX = "first-response:"


@dataclass(frozen=True)
class TaskUpdate:
    """Re-own or close a task the sidecar created, addressed by that task's outbox idempotency key
    (a reassigned lead's open first-response task follows the lead, or is closed: no orphan task).
    A task already completed in the CRM is left alone. A re-owned task is due at the new owner's
    deadline (`due_at`, the breach instant of the clock the hand-over started), written as task
    creation writes it (`due_tz` as `TaskRequest.due_tz`); None leaves the due date as it is."""

    lead: LeadContext
    task_key: str
    new_owner_id: str | None = None
    close: bool = False
    due_at: datetime | None = None
    due_tz: str | None = None


@dataclass(frozen=True)
class NoteRequest:
    lead: LeadContext
    body: str
    at: datetime


@dataclass(frozen=True)
class OwnerChange:
    lead: LeadContext
    from_owner_id: str | None
    to_owner_id: str
    # The CRM modification time our decision was based on; a later change means a human acted.
    seen_modified_at: datetime


@dataclass(frozen=True)
class LeadUpdate:
    """Change a lead's status and/or tags in the CRM (compliance hold, churn tag)."""
    lead: LeadContext
    crm_status: str | None = None       # a CRM status value, chosen by the core from the policy's state map
    add_tags: tuple[str, ...] = ()      # e.g. ("churn-risk-elevated",); stored in the connector's configured tags field
    reason: str | None = None           # shown on the record (e.g. compliance rejection reason)
    # The CRM status the decision expects to replace: when set and the record's status is something
    # else by the time the update is written, a person changed it since and their status stands
    # (ConflictError). None: overwrite (a compliance hold must win over a rep's status).
    expect_status: str | None = None


class Notifier(Protocol):
    def send(self, notification: Notification, idempotency_key: str) -> str:
        """Deliver and return a message reference. Raises TransientError / PermanentError."""
        ...

    def send_digest(self, notifications: Sequence[Notification], idempotency_key: str) -> str:
        """One message listing several warnings for the same recipient."""
        ...


class CrmWriter(Protocol):
    crm: Crm

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        """Create at most one task per key (look the key up before creating); return its id."""
        ...

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str: ...

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        """Conditional owner change; raises ConflictError when the record changed meanwhile."""
        ...

    def update_lead(self, update: LeadUpdate, idempotency_key: str) -> None:
        """Set the lead's status and/or add tags; a replay changes nothing. Raises ConflictError when
        `update.expect_status` is set and a person changed the status since."""
        ...

    def update_task(self, update: TaskUpdate, idempotency_key: str) -> str:
        """Re-own or close the task created under `update.task_key`; returns what was done (e.g.
        "owner:005...", "closed", "already closed"). PermanentError when no such task exists."""
        ...


class BatchTaskWriter(Protocol):
    """Optional on a CrmWriter: many tasks in few API calls (the dispatcher uses it when present)."""

    def create_tasks(self, items: Sequence[tuple[TaskRequest, str]],
                     unsent: Collection[str] = ()) -> Mapping[str, str | Exception]:
        """(request, idempotency key) pairs -> per key: the task id (created or found), or the
        TransientError / PermanentError for that item alone. `unsent`: keys no earlier attempt ever
        sent (the dispatcher's first attempt at them), so there is nothing to look up before
        creating; any other key may have been written by an attempt whose outcome was lost."""
        ...


class BatchNoteWriter(Protocol):
    """Optional on a CrmWriter: many notes in few API calls (the dispatcher uses it when present)."""

    def add_notes(self, items: Sequence[tuple[NoteRequest, str]],
                  unsent: Collection[str] = ()) -> Mapping[str, str | Exception]:
        """(request, idempotency key) pairs -> per key: the note id (created or found), or the error
        of that item alone. `unsent` as for `BatchTaskWriter.create_tasks`."""
        ...


class BatchOwnerWriter(Protocol):
    """Optional on a CrmWriter: many conditional owner changes in few API calls (one batched read
    of the current owners, then one batched write of those still owned as the decision saw)."""

    def change_owners(self, items: Sequence[tuple[OwnerChange, str]]) -> Mapping[str, str | Exception]:
        """(change, idempotency key) pairs -> per key: "owner:<to_owner_id>" when the lead has that
        owner now (written, or already so), or that item's own error (ConflictError when a person
        changed the lead since the decision: their change stands)."""
        ...


@dataclass(frozen=True)
class Cursor:
    """Incremental read position: inclusive timestamp plus the ids already seen at it."""

    at: datetime | None = None
    seen_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangePage:
    snapshots: Sequence[LeadSnapshot]
    cursor: Cursor  # commit together with the snapshots it covers
    # Records on this page the connector could not map, {crm id: why}: audited, never blocking the page.
    rejected: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DirectoryUser:
    id: str
    name: str
    email: str
    active: bool = True
    manager_id: str | None = None
    team: str | None = None


class CrmReader(Protocol):
    crm: Crm

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        """Leads changed at or after the cursor, oldest first, page by page."""
        ...

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        """Targeted read for ids a webhook announced; the same mapping as polling."""
        ...

    def read_users(self) -> list[DirectoryUser]: ...

    def record_url(self, crm_id: str) -> str: ...
