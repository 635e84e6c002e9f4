"""Tables of the shadow store. Times are aware UTC; JSON columns hold small detail dicts only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sidecar.store.types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON,
    }


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    market: Mapped[str] = mapped_column(String(64))
    manager_id: Mapped[str | None] = mapped_column(String(64))
    slack_channel: Mapped[str | None] = mapped_column(String(100))
    chat: Mapped[str | None] = mapped_column(String(10))  # "slack" (also when NULL) or "teams"
    # Name of the env var that holds the team channel's Teams workflow URL (the URL is a secret).
    teams_workflow_env: Mapped[str | None] = mapped_column(String(100))
    ops_queue_id: Mapped[str | None] = mapped_column(String(64))  # CRM queue for "no one available"


class Rep(Base):
    __tablename__ = "reps"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the CRM user/owner id
    crm: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), index=True)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"))
    role: Mapped[str] = mapped_column(String(20), default="rep")  # rep | manager | vp
    seniority: Mapped[int] = mapped_column(Integer, default=1)
    capacity: Mapped[int] = mapped_column(Integer, default=50)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    # Own shift, written like a market's hours ({mon-fri: ["07:00-15:00"]}); None = the team market's hours.
    hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class RepPto(Base):
    __tablename__ = "rep_pto"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rep_id: Mapped[str] = mapped_column(ForeignKey("reps.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]


class MarketRow(Base):
    __tablename__ = "markets"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    tz: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]]  # hours and holidays as the policy gave them


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("crm", "crm_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(20))
    crm_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300), default="")
    company: Mapped[str] = mapped_column(String(300), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    market: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(100))
    intent: Mapped[str | None] = mapped_column(String(20))
    # Which rule gave `intent`: an intent rule's id, "crm" (the CRM said), or "default".
    intent_rule: Mapped[str | None] = mapped_column(String(100))
    score: Mapped[float | None] = mapped_column(Float)
    tier: Mapped[str | None] = mapped_column(String(50))
    deal_size: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(40), index=True)
    crm_status: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    team_id: Mapped[str | None] = mapped_column(String(64))
    flags: Mapped[list[Any]] = mapped_column(default=list)
    country: Mapped[str | None] = mapped_column(String(64), default=None)  # jurisdiction, for compliance
    created_at: Mapped[datetime | None]
    state_entered_at: Mapped[datetime]
    last_progress_at: Mapped[datetime | None]
    crm_modified_at: Mapped[datetime]
    # High-value flag state (patterns.high_value): set when flagged, cleared (re-armed) only once the
    # lead falls below the threshold minus the policy's hysteresis, so an oscillating score flags once.
    high_value_at: Mapped[datetime | None] = mapped_column(default=None)
    # Normalised company name: leads of one account (patterns.churn pauses their outreach together).
    account_key: Mapped[str | None] = mapped_column(String(300), index=True, default=None)


class LeadEvent(Base):
    """Append-only history: transitions, progress, owner and field changes."""

    __tablename__ = "lead_events"
    __table_args__ = (UniqueConstraint("lead_id", "dedupe_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    old: Mapped[str | None] = mapped_column(String(300))
    new: Mapped[str | None] = mapped_column(String(300))
    dedupe_key: Mapped[str] = mapped_column(String(200))  # e.g. the CRM activity id
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # When the sidecar read it (poll or webhook), which may be later than `at` (the CRM's time):
    # `sidecar simulate` feeds it in at this instant, as the recorded engine saw it. None: before 0011.
    recorded_at: Mapped[datetime | None] = mapped_column(default=None)


class PolicyVersion(Base):
    __tablename__ = "policy_versions"
    version: Mapped[str] = mapped_column(String(16), primary_key=True)  # short content hash
    label: Mapped[str] = mapped_column(String(200), default="")
    content: Mapped[dict[str, Any]]
    source_file: Mapped[str] = mapped_column(String(500), default="")
    activated_at: Mapped[datetime]  # last time this content became the active policy


class Clock(Base):
    """An SLA clock for one lead in one state. `next_due_at` is the only thing a tick scans."""

    __tablename__ = "clocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="sla")  # room for stuck-lead clocks
    state: Mapped[str] = mapped_column(String(40))
    rule_id: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[str] = mapped_column(ForeignKey("policy_versions.version"))
    market: Mapped[str | None] = mapped_column(String(64))
    window_s: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    consumed_s: Mapped[float] = mapped_column(Float, default=0.0)  # business seconds before running_since
    running_since: Mapped[datetime | None]  # None while paused or closed
    steps_fired: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | paused | closed
    closed_at: Mapped[datetime | None]
    close_reason: Mapped[str | None] = mapped_column(String(100))
    # The intent tier whose ladder this clock follows (Policy.ladder_of); None: the main ladder.
    ladder: Mapped[str | None] = mapped_column(String(20))
    # Tightened for a high-value lead: `window_s` = round(base_window_s * window_factor) (explain shows all three).
    base_window_s: Mapped[int | None] = mapped_column(Integer, default=None)
    window_factor: Mapped[float | None] = mapped_column(Float, default=None)
    paused_by: Mapped[str | None] = mapped_column(String(40), default=None)  # e.g. "churn:3" (a churn hold)


class AuditRow(Base):
    """Append-only. `step_key` makes a re-run of the same step a no-op instead of a second row."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    crm: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(60))
    rule_id: Mapped[str | None] = mapped_column(String(100))
    policy_version: Mapped[str | None] = mapped_column(String(16))
    owner_id: Mapped[str | None] = mapped_column(String(64))
    elapsed_business_s: Mapped[float | None] = mapped_column(Float)
    window_s: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100), default="system")
    step_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the decision did, typed (sidecar.audit.Pattern / StepAction): `kind` is the admin's label.
    pattern: Mapped[str | None] = mapped_column(String(30))
    action: Mapped[str | None] = mapped_column(String(20), index=True)
    to_owner: Mapped[str | None] = mapped_column(String(64))  # new owner (rep or queue) of an owner change


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    audit_id: Mapped[int | None] = mapped_column(ForeignKey("audit.id"))
    depends_on: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))  # e.g. notify after owner change
    port: Mapped[str] = mapped_column(String(40))  # crm_writer | notifier | router
    action: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|in_flight|done|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(String(200))  # message ref, task id, "conflict"...
    recipient: Mapped[str | None] = mapped_column(String(320), index=True)  # notifications: who reads it
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class SyncCursor(Base):
    __tablename__ = "sync_cursors"
    crm: Mapped[str] = mapped_column(String(20), primary_key=True)
    stream: Mapped[str] = mapped_column(String(40), primary_key=True)  # leads | activities | users
    cursor_at: Mapped[datetime | None]
    cursor_ids: Mapped[list[Any]] = mapped_column(default=list)  # ids seen at cursor_at (boundary de-dup)
    last_poll_at: Mapped[datetime | None]  # last successful poll
    # The last poll's outcome, for `sidecar status` (leads stream): when it ran, why it failed
    # (None: it succeeded) and since when it has been failing.
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    failing_since: Mapped[datetime | None] = mapped_column(default=None)


class RoutingPointer(Base):
    """Round-robin position per team, persisted so fairness survives restarts."""

    __tablename__ = "routing_pointers"
    team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_rep_id: Mapped[str | None] = mapped_column(String(64))


class IntakeItem(Base):
    """A lead id announced by a webhook, stored durably before the webhook is acknowledged.

    `delivery_id` (HubSpot eventId, Salesforce notification Id) de-duplicates repeated deliveries.
    The ids are then read through the same path as polling, so the two can never disagree.
    """

    __tablename__ = "intake"
    __table_args__ = (UniqueConstraint("crm", "delivery_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(20))
    delivery_id: Mapped[str] = mapped_column(String(100))
    crm_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None] = mapped_column(index=True)
    # Set when the CRM refused to read this id on its own: dead-lettered, shown by `sidecar status`.
    error: Mapped[str | None] = mapped_column(String(500))
    # Set while a drainer reads this id from the CRM: only the holder of the token applies it, and a
    # dead drainer's claim is taken over once `claimed_until` has passed (several sidecars, one intake).
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]


class ReviewItem(Base):
    """A lead a person has to look at (ops review: stuck for 4x its window; compliance: on hold).

    Open while `resolved_at` is None; at most one open item per (queue, lead, reason), so a pattern
    that fires again while its item is open adds nothing. `last_surfaced_at`: when the item was last
    shown to its queue's channel (aging compliance items are re-surfaced daily)."""

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_open", "queue", "resolved_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(20))  # ops_review | compliance
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    reason: Mapped[str] = mapped_column(String(200))
    pattern: Mapped[str] = mapped_column(String(30))
    rule_id: Mapped[str | None] = mapped_column(String(100))
    policy_version: Mapped[str | None] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolution: Mapped[str | None] = mapped_column(String(2000))
    last_surfaced_at: Mapped[datetime | None]
class Signal(Base):
    """A churn-risk signal, stored once per signal id (a repeated POST or CRM flag is a no-op)."""

    __tablename__ = "signals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    signal_id: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(60))
    source: Mapped[str] = mapped_column(String(20))  # api | crm_flag
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    account_key: Mapped[str | None] = mapped_column(String(300))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    audit_id: Mapped[int | None] = mapped_column(ForeignKey("audit.id"))


class ChurnHold(Base):
    """New outreach to an account paused until the retention touchpoint on `lead_id` is done."""

    __tablename__ = "churn_holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_key: Mapped[str] = mapped_column(String(300), index=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"))  # the lead the retention task is on
    signal_id: Mapped[str] = mapped_column(String(200))
    task_key: Mapped[str] = mapped_column(String(200))  # outbox key of the retention task
    started_at: Mapped[datetime]
    released_at: Mapped[datetime | None] = mapped_column(index=True)
    released_by: Mapped[str | None] = mapped_column(String(100))


class LeadOutcome(Base):
    """One row per lead: how its first response went and how it ended (sidecar.outcomes).

    Rebuilt from the audit, the lead's events and its clocks, so the same history always gives the
    same row; SLA hit rate per (market, source, team_id, owner_id, intent) is a GROUP BY over `sla_met`.
    """

    __tablename__ = "lead_outcomes"
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), primary_key=True)
    crm: Mapped[str] = mapped_column(String(20))
    crm_id: Mapped[str] = mapped_column(String(64))
    market: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(100))
    team_id: Mapped[str | None] = mapped_column(String(64))
    owner_id: Mapped[str | None] = mapped_column(String(64))  # who owned it when its first SLA ran
    intent: Mapped[str | None] = mapped_column(String(20))  # the intent tier
    arrived_at: Mapped[datetime | None]
    window_s: Mapped[int | None] = mapped_column(Integer)  # the first SLA window
    first_response_at: Mapped[datetime | None]
    first_response_s: Mapped[float | None] = mapped_column(Float)  # business seconds from arrival
    sla_met: Mapped[bool | None] = mapped_column(Boolean)  # None while the first window still runs
    reminder_fired: Mapped[bool] = mapped_column(Boolean, default=False)
    manager_escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    reassigned: Mapped[bool] = mapped_column(Boolean, default=False)
    contacted: Mapped[bool] = mapped_column(Boolean, default=False)
    qualified: Mapped[bool] = mapped_column(Boolean, default=False)
    disqualified: Mapped[bool] = mapped_column(Boolean, default=False)
    booked: Mapped[bool] = mapped_column(Boolean, default=False)
    no_response: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_lost_due_to_delay: Mapped[bool] = mapped_column(Boolean, default=False)
    recovered_after_escalation: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]
