"""What people did in the CRM, read back from the recorded store, for `sidecar simulate`.

The store keeps each lead's row (its latest state) and its append-only events (created, field,
owner and state changes, progress, merges). From these this module rebuilds, per lead, the record
as it was when it arrived and every change a *person* made after that, each as the `LeadSnapshot`
a connector would have handed over, fed in at the instant the recorded sidecar read it
(`LeadEvent.recorded_at`; its CRM time for events recorded before that column). Changes the
sidecar itself made (an owner change or a status write it performed) are left out: a simulation
makes its own, and replaying the recorded ones would count them twice or apply them under a
policy that never decided them.
Such an echo is recognised by the recorded effect that wrote it: a done `change_owner` or
`update_lead` outbox row whose value the event shows, on that lead, at or after the decision.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.audit import Pattern, StepAction
from sidecar.domain import Crm, Intent, LeadSnapshot, LeadState, ProgressActivity, ProgressKind, is_canonical
from sidecar.engine.patterns.compliance import crm_status_for
from sidecar.ingest import CRM_INTENT, canonical_state
from sidecar.policy.model import Policy
from sidecar.store.models import AuditRow, Lead, LeadEvent, OutboxRow, Signal

SCALARS = ("score", "deal_size")


@dataclass
class CrmRecord:
    """One lead as its CRM holds it while the simulation runs (people's changes and the simulated
    sidecar's writes both land here; each read turns it into a snapshot)."""

    crm: str
    crm_id: str
    fields: dict[str, Any]  # snapshot fields: crm_status, owner_id, score, tier, deal_size, flags, ...
    modified_at: datetime
    status_changed_at: datetime | None = None
    owner_changed_at: datetime | None = None

    def snapshot(self, activities: tuple[ProgressActivity, ...] = (), merged_into: str | None = None) -> LeadSnapshot:
        return LeadSnapshot(crm=Crm(self.crm), crm_id=self.crm_id, crm_modified_at=self.modified_at,
                            status_changed_at=self.status_changed_at, owner_changed_at=self.owner_changed_at,
                            activities=activities, merged_into=merged_into, **self.fields)


@dataclass
class Change:
    """What one person did to one lead at one instant (one or more events of the same read)."""

    at: datetime  # when the recorded sidecar read it (its events' `recorded_at`, else their CRM time)
    crm: str
    crm_id: str
    order: int  # the first event's id: the order the recording applied them in
    sets: dict[str, Any] = field(default_factory=dict)  # fields to set on the record
    modified_at: datetime | None = None  # the CRM's times of the change (may be earlier than `at`)
    status_changed_at: datetime | None = None
    owner_changed_at: datetime | None = None
    activities: list[ProgressActivity] = field(default_factory=list)
    merged_into: str | None = None
    created: bool = False


@dataclass(frozen=True)
class Decision:
    """What a person told the sidecar itself (not the CRM): a churn signal posted to the API, or a
    compliance officer's decision. Replayed through the same core functions at the same instant."""

    at: datetime
    crm: str
    crm_id: str
    kind: str  # signal | compliance
    args: dict[str, Any]


@dataclass
class Timeline:
    records: dict[tuple[str, str], CrmRecord]  # as each lead arrived
    changes: list[Change]  # arrivals and people's changes, in the order they were recorded
    lead_ids: dict[int, tuple[str, str]]  # recorded lead id -> (crm, crm_id)
    echoes: int = 0  # recorded events left out as the sidecar's own writes coming back
    decisions: list[Decision] = field(default_factory=list)


def _parse(name: str, text: str | None) -> Any:
    """A field_changed event keeps values as text (ingest's `_text`)."""
    if text is None:
        return None
    if name in SCALARS:
        return float(text)
    if name == "flags":
        try:
            return frozenset(str(flag) for flag in ast.literal_eval(text))
        except (ValueError, SyntaxError):
            return frozenset()
    return text


def _status_for(policy: Policy, lead: Lead, state: str) -> str:
    """The CRM status of canonical `state`: the lead's own status when that is the one it maps to,
    else the first status the recorded policy maps to it (the events keep canonical states only)."""
    if canonical_state(policy, lead.crm, lead.crm_status) == state or not is_canonical(state):
        return lead.crm_status
    return crm_status_for(policy, lead.crm, LeadState(state)) or lead.crm_status


def _echo_ids(session: Session, policy: Policy, leads: dict[tuple[str, str], Lead],
              events: list[LeadEvent]) -> set[int]:
    """Events that show a write the recorded sidecar performed (see the module docstring)."""
    writes = session.scalars(select(OutboxRow).where(OutboxRow.action.in_(("change_owner", "update_lead")),
                                                     OutboxRow.status == "done").order_by(OutboxRow.id))
    by_lead: dict[int, list[LeadEvent]] = {}
    for event in events:
        by_lead.setdefault(event.lead_id, []).append(event)
    echoes: set[int] = set()
    for write in writes:
        target = write.payload.get("lead", {})
        lead = leads.get((str(target.get("crm")), str(target.get("crm_id"))))
        if lead is None:
            continue
        if write.action == "change_owner":
            kind, value = "owner_changed", write.payload.get("to_owner_id")
        elif write.payload.get("crm_status"):
            kind, value = "state_changed", canonical_state(policy, lead.crm, str(write.payload["crm_status"]))
        else:
            continue  # tags only: kept in their own CRM field, never read back as a lead change
        echo = next((e for e in by_lead.get(lead.id, []) if e.id not in echoes and e.kind == kind
                     and e.new == value and e.at >= write.created_at), None)
        if echo is not None:
            echoes.add(echo.id)
    return echoes


def _initial_owner(lead: Lead, events: list[LeadEvent], decisions: list[AuditRow]) -> str | None:
    """Who owned the lead at arrival: the "before" of the first owner change, a person's (an
    owner_changed event) or the sidecar's (an audit row naming a new owner; its `owner_id` is the
    owner when it decided). The shadow row takes the sidecar's own changes without an event."""
    befores = [(e.at, 0, e.id, e.old) for e in events if e.kind == "owner_changed"]
    befores += [(row.at, 1, row.id, row.owner_id) for row in decisions if row.to_owner is not None]
    return min(befores, key=lambda b: b[:3])[3] if befores else lead.owner_id


def _initial_fields(policy: Policy, lead: Lead, events: list[LeadEvent], owner: str | None) -> dict[str, Any]:
    created = next(e for e in events if e.kind == "created")
    values: dict[str, Any] = {"score": lead.score, "tier": lead.tier, "deal_size": lead.deal_size,
                              "flags": frozenset(str(f) for f in lead.flags or [])}
    seen: set[str] = set()
    for event in events:  # the oldest value of each tracked field is what it arrived with
        name = str(event.detail.get("field", ""))
        if event.kind == "field_changed" and name in values and name not in seen:
            seen.add(name)
            values[name] = _parse(name, event.old)
    return {
        "crm_status": _status_for(policy, lead, str(created.new)), "owner_id": owner, "name": lead.name,
        "company": lead.company, "email": lead.email, "market": lead.market, "source": lead.source,
        "country": lead.country, "created_at": lead.created_at,
        # An intent the CRM gave is data; one an intent rule derived is re-derived by the simulated policy.
        "intent": Intent(lead.intent) if lead.intent_rule == CRM_INTENT and lead.intent else None, **values,
    }


def _change_of(policy: Policy, lead: Lead, event: LeadEvent, change: Change) -> None:
    change.modified_at = max(change.modified_at or event.at, event.at)
    if event.kind == "field_changed":
        name = str(event.detail.get("field", ""))
        if name in ("score", "tier", "deal_size", "flags"):
            change.sets[name] = _parse(name, event.new)
    elif event.kind == "owner_changed":
        change.sets["owner_id"], change.owner_changed_at = event.new, event.at
    elif event.kind == "state_changed":
        change.sets["crm_status"], change.status_changed_at = _status_for(policy, lead, str(event.new)), event.at
    elif event.kind == "progress" and event.new is not None and event.new in set(ProgressKind):
        change.activities.append(ProgressActivity(
            crm_id=str(event.detail.get("activity_id") or event.dedupe_key.removeprefix("activity:")),
            kind=ProgressKind(event.new), at=event.at, by=event.detail.get("by")))
    elif event.kind == "merged" and event.dedupe_key.startswith("merged_into:"):
        change.merged_into = event.new  # the survivor's "merged_from" follows from this one


def read_timeline(session: Session, policy: Policy, start: datetime, end: datetime) -> Timeline:
    """The leads of the period, each with what people did to it from its arrival until `end`: those
    that arrived in [start, end), and older ones that changed or were escalated in it (their history
    before `start` replays too, so that their clocks stand where they would have). `policy` is the
    recorded (active) policy: it maps the events' canonical states back to CRM statuses."""
    touched = select(LeadEvent.lead_id).where(LeadEvent.at >= start, LeadEvent.at < end)
    escalated = select(AuditRow.lead_id).where(AuditRow.at >= start, AuditRow.at < end,
                                               AuditRow.lead_id.is_not(None))
    arrived = select(LeadEvent.lead_id).where(LeadEvent.kind == "created", LeadEvent.at < end)
    scope = set(session.scalars(touched)) | set(session.scalars(escalated))
    leads = {lead.id: lead for lead in session.scalars(select(Lead).where(Lead.id.in_(scope), Lead.id.in_(arrived)))}
    events = list(session.scalars(select(LeadEvent).where(LeadEvent.lead_id.in_(leads), LeadEvent.at < end)
                                  .order_by(LeadEvent.id)))
    decisions = list(session.scalars(select(AuditRow).where(AuditRow.lead_id.in_(leads),
                                                            AuditRow.to_owner.is_not(None))))
    by_key = {(lead.crm, lead.crm_id): lead for lead in leads.values()}
    echoes = _echo_ids(session, policy, by_key, events)
    records: dict[tuple[str, str], CrmRecord] = {}
    changes: list[Change] = []  # each read of a lead: its events that share one `recorded_at`
    for lead_id, lead in leads.items():
        mine = [e for e in events if e.lead_id == lead_id]
        owner = _initial_owner(lead, mine, [d for d in decisions if d.lead_id == lead_id])
        created = next(e for e in mine if e.kind == "created")
        records[(lead.crm, lead.crm_id)] = CrmRecord(lead.crm, lead.crm_id, _initial_fields(policy, lead, mine, owner),
                                                     created.at)
        current: Change | None = None
        for event in mine:
            if event.id in echoes or (event.kind == "merged" and not event.dedupe_key.startswith("merged_into:")):
                continue
            # An arrival is its own read: a change recorded in the same minute came with a later one.
            read = event.recorded_at or event.at
            if current is None or read != current.at or (current.created and event.kind != "progress"):
                current = Change(read, lead.crm, lead.crm_id, event.id, created=event.kind == "created")
                changes.append(current)
            _change_of(policy, lead, event, current)
    changes.sort(key=lambda c: (c.at, c.order))
    ids = {i: (lead.crm, lead.crm_id) for i, lead in leads.items()}
    return Timeline(records, changes, ids, len(echoes), _decisions(session, ids, end))


def _decisions(session: Session, leads: dict[int, tuple[str, str]], end: datetime) -> list[Decision]:
    out = []
    for signal in session.scalars(select(Signal).where(Signal.source == "api", Signal.lead_id.in_(leads),
                                                       Signal.received_at < end)):
        crm, crm_id = leads[signal.lead_id or 0]
        out.append(Decision(signal.received_at, crm, crm_id, "signal", {
            "signal_id": signal.signal_id, "type": signal.type, "occurred_at": signal.occurred_at}))
    decided = select(AuditRow).where(AuditRow.pattern == Pattern.COMPLIANCE.value,
                                     AuditRow.action == StepAction.UPDATE.value,
                                     AuditRow.lead_id.in_(leads), AuditRow.at < end)
    for row in session.scalars(decided):
        if row.lead_id is None or row.details.get("decision") not in ("clear", "reject"):
            continue
        crm, crm_id = leads[row.lead_id]
        out.append(Decision(row.at, crm, crm_id, "compliance", {
            "decision": row.details["decision"], "by": row.actor, "reason": str(row.details.get("reason") or "-")}))
    return sorted(out, key=lambda d: d.at)


def apply_change(record: CrmRecord, change: Change) -> LeadSnapshot:
    """The person's change made on the record; the snapshot a read right after it returns."""
    record.fields.update(change.sets)
    if not change.created and change.modified_at is not None:
        record.modified_at = max(record.modified_at, change.modified_at)
    record.status_changed_at = change.status_changed_at or record.status_changed_at
    record.owner_changed_at = change.owner_changed_at or record.owner_changed_at
    return record.snapshot(tuple(change.activities), change.merged_into)


def written(record: CrmRecord, at: datetime, *, owner: str | None = None, status: str | None = None) -> None:
    """The simulated sidecar's write landing on the record, as the CRM would keep it."""
    if owner is not None and owner != record.fields.get("owner_id"):
        record.fields["owner_id"], record.owner_changed_at = owner, at
    if status is not None and status != record.fields.get("crm_status"):
        record.fields["crm_status"], record.status_changed_at = status, at
    record.modified_at = max(record.modified_at, at)

