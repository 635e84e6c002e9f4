"""Plain domain types shared by every layer. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Crm(StrEnum):
    SALESFORCE = "salesforce"
    HUBSPOT = "hubspot"


class LeadState(StrEnum):
    """Canonical states; each CRM's own status values map onto these by config."""

    NEW = "NEW"
    CONTACTED = "CONTACTED"
    QUALIFIED = "QUALIFIED"
    UNQUALIFIED = "UNQUALIFIED"
    PROPOSAL = "PROPOSAL"
    ON_HOLD = "ON_HOLD"
    COMPLIANCE_HOLD = "COMPLIANCE_HOLD"
    DISQUALIFIED_COMPLIANCE = "DISQUALIFIED_COMPLIANCE"
    CONVERTED = "CONVERTED"
    CLOSED = "CLOSED"


def is_canonical(state: str) -> bool:
    """False for a CRM status the policy does not map (stored as UNMAPPED): no clock runs on it."""
    return state in LeadState.__members__


# States in which a lead no longer needs anyone: they count toward nobody's capacity.
TERMINAL_STATES = frozenset({LeadState.CONVERTED, LeadState.CLOSED, LeadState.UNQUALIFIED,
                             LeadState.DISQUALIFIED_COMPLIANCE})


class Intent(StrEnum):
    HIGH = "high"
    MID = "mid"
    LOW = "low"
    UNCLEAR = "unclear"


class Persona(StrEnum):
    """Who a notification is for; each persona has its own channel (seed 001, step 3)."""

    OWNER = "owner"
    NEW_OWNER = "new_owner"
    MANAGER = "manager"
    OPS_REVIEW = "ops_review"
    COMPLIANCE = "compliance"
    CUSTOMER_SUCCESS = "customer_success"
    REGIONAL_VP = "regional_vp"


class ProgressKind(StrEnum):
    """Real work on a lead. Only these (as the policy allows per state) reset a clock."""

    CALL_LOGGED = "call_logged"
    EMAIL_SENT = "email_sent"
    MEETING_HELD = "meeting_held"
    DISQUALIFIED = "disqualified"
    # The owner completed the first-response task the sidecar created (its key starts with
    # `ports.FIRST_RESPONSE_TASK_PREFIX`): connectors report it from the CRM's closed task.
    FIRST_RESPONSE_TASK_COMPLETED = "first_response_task_completed"


@dataclass(frozen=True)
class ProgressActivity:
    """A completed activity on a lead as a CRM reports it (a Task, an engagement...)."""

    crm_id: str
    kind: ProgressKind
    at: datetime
    by: str | None = None


@dataclass(frozen=True)
class LeadSnapshot:
    """One lead as a connector read it, already mapped to canonical fields."""

    crm: Crm
    crm_id: str
    crm_status: str
    crm_modified_at: datetime
    name: str = ""
    company: str = ""
    email: str = ""
    market: str | None = None
    source: str | None = None
    intent: Intent | None = None
    score: float | None = None
    tier: str | None = None
    deal_size: float | None = None
    owner_id: str | None = None
    created_at: datetime | None = None
    # Exact transition times from the CRM's history, when the connector has them.
    status_changed_at: datetime | None = None
    owner_changed_at: datetime | None = None
    flags: frozenset[str] = frozenset()
    activities: tuple[ProgressActivity, ...] = field(default_factory=tuple)
    # Set when the CRM merged this lead into another record (same CRM; that record's crm_id): the
    # lead is gone for good, its work continues on the survivor. The other fields are not applied.
    merged_into: str | None = None
    country: str | None = None  # ISO country code of the lead's jurisdiction, when the field map names one
