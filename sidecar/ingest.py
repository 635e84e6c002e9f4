"""CRM snapshots -> shadow lead rows, append-only lead events, and clock changes.

Connectors hand over `LeadSnapshot`s (polling and webhooks alike); this module decides what
changed. It is idempotent (the same snapshot twice records nothing) and ignores snapshots older
than what is stored, so out-of-order deliveries cannot roll a lead back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import audit, review_queue
from sidecar.domain import Intent, LeadSnapshot, LeadState, ProgressActivity, ProgressKind, is_canonical
from sidecar.engine import clocks
from sidecar.engine.patterns import churn, first_response
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import Policy
from sidecar.store import preloaded
from sidecar.store.models import Lead, LeadEvent, Rep

TRACKED_FIELDS = ("score", "tier", "deal_size", "flags")
UNMAPPED = "UNMAPPED"  # a CRM status the policy does not map: stored, but no clock runs on it
STATUS_WIDTH = 100  # leads.crm_status; a longer status is never a mapped one, so clipping it keeps it UNMAPPED
TASK_CLOSED_BY_SIDECAR = "task_closed_by_sidecar"  # a lead event: our own close of its task, read back


@dataclass
class Applied:
    lead: Lead | None  # None: a merge of a lead never tracked here (nothing to record)
    events: list[LeadEvent]
    # Whether the lead waits for a compliance decision, once known: several patterns ask per
    # snapshot. False for a lead created by this snapshot (no review item can name it yet); the
    # compliance pattern sets it when it holds the lead; None: not looked up yet.
    held: bool | None = None
    created: bool = False  # the snapshot created the lead (its row is new in this transaction)

    def on_compliance_hold(self, session: Session) -> bool:
        if self.held is None:
            self.held = self.lead is not None and review_queue.on_compliance_hold(session, self.lead.id)
        return self.held


def canonical_state(policy: Policy, crm: str, status: str) -> str:
    state_map = policy.states.get(crm)  # type: ignore[call-overload]
    mapped = state_map.map.get(status) if state_map is not None else None
    return mapped.value if mapped is not None else UNMAPPED


CRM_INTENT, DEFAULT_INTENT = "crm", "default"  # `Lead.intent_rule` when no intent rule chose it


def derive_intent(policy: Policy, snapshot: LeadSnapshot) -> Intent:
    return intent_with_rule(policy, snapshot)[0]


def intent_with_rule(policy: Policy, snapshot: LeadSnapshot) -> tuple[Intent, str]:
    """The lead's intent tier and what chose it: an intent rule's id, "crm" or "default"."""
    if snapshot.intent is not None:
        return snapshot.intent, CRM_INTENT
    for rule in policy.intent.rules:
        if rule.sources and snapshot.source not in rule.sources:
            continue
        if rule.min_score is not None and (snapshot.score is None or snapshot.score < rule.min_score):
            continue
        return rule.intent, rule.id
    return policy.intent.default, DEFAULT_INTENT


_RECORDED_AT = "sidecar_events_recorded_at"  # session.info, while `apply_snapshot` runs


def apply_snapshot(session: Session, book: PolicyBook, snapshot: LeadSnapshot,
                   recorded_at: datetime | None = None) -> Applied:
    """`recorded_at`: the instant the engine saw the snapshot, kept on each event it records (a
    simulation replays it then); written with the event's insert, not by an UPDATE after it."""
    session.info[_RECORDED_AT] = recorded_at
    try:
        return _apply(session, book, snapshot)
    finally:
        session.info.pop(_RECORDED_AT, None)


def _apply(session: Session, book: PolicyBook, snapshot: LeadSnapshot) -> Applied:
    _version, policy = book.active(session)
    state = canonical_state(policy, snapshot.crm.value, snapshot.crm_status)
    lead = session.scalars(
        select(Lead).where(Lead.crm == snapshot.crm.value, Lead.crm_id == snapshot.crm_id)
    ).first()
    if snapshot.merged_into is not None:
        return Applied(lead, _merge(session, lead, snapshot, state) if lead is not None else [])
    if lead is None:
        return _create(session, book, policy, snapshot, state)
    if snapshot.crm_modified_at < lead.crm_modified_at:
        return Applied(lead, [])  # older than what we have: a late or replayed delivery
    return _update(session, book, policy, lead, snapshot, state)


def _team_of(session: Session, owner_id: str | None) -> str | None:
    rep = preloaded.get(session, Rep, owner_id) if owner_id else None
    return rep.team_id if rep is not None else None


def _fields(policy: Policy, snapshot: LeadSnapshot) -> dict[str, Any]:
    intent, intent_rule = intent_with_rule(policy, snapshot)
    return {
        "name": _clip(snapshot.name) or "", "company": _clip(snapshot.company) or "",
        "email": _clip(snapshot.email, 320) or "", "market": _clip(snapshot.market, 64),
        "source": _clip(snapshot.source, 100),
        "intent": intent.value, "intent_rule": intent_rule, "score": snapshot.score, "tier": _clip(snapshot.tier, 50),
        "deal_size": snapshot.deal_size, "flags": sorted(snapshot.flags),
        "country": _clip(snapshot.country.upper() if snapshot.country else None, 64),
    }


def _create(session: Session, book: PolicyBook, policy: Policy, snapshot: LeadSnapshot,
            state: str) -> Applied:
    arrived = snapshot.created_at or snapshot.crm_modified_at
    entered = snapshot.status_changed_at or arrived
    fields = _fields(policy, snapshot)
    # The account key is the churn pattern's (it sets it after every snapshot): set with the insert,
    # it spares an UPDATE of every new lead.
    lead = Lead(crm=snapshot.crm.value, crm_id=snapshot.crm_id, state=state,
                crm_status=_clip(snapshot.crm_status, STATUS_WIDTH) or "",
                owner_id=snapshot.owner_id, team_id=_team_of(session, snapshot.owner_id),
                created_at=arrived, state_entered_at=entered, last_progress_at=None,
                crm_modified_at=snapshot.crm_modified_at, account_key=churn.account_key(fields["company"]), **fields)
    session.add(lead)
    session.flush()
    events = [_event(session, lead, arrived, "created", None, state, "created", first=True)]
    if is_canonical(state) and state not in {s.value for s in policy.pause_states}:
        for kind in clocks.KINDS:  # the SLA ladder and the stuck-lead count start together
            clocks.start_clock(session, book, lead, entered, kind)
    for activity in sorted(snapshot.activities, key=lambda a: a.at):  # may reset the new clock
        event = _activity(session, book, lead, activity)
        if event is not None:
            events.append(event)
    return Applied(lead, events, held=False, created=True)


def _update(session: Session, book: PolicyBook, policy: Policy, lead: Lead, snapshot: LeadSnapshot,
            state: str) -> Applied:
    events: list[LeadEvent] = []
    stamp = snapshot.crm_modified_at
    fields = _fields(policy, snapshot)
    for name in TRACKED_FIELDS:
        if getattr(lead, name) != fields[name]:
            events.append(_event(session, lead, stamp, "field_changed", _text(getattr(lead, name)),
                                 _text(fields[name]), f"{name}@{stamp.isoformat()}", {"field": name}))
    for name, value in fields.items():
        setattr(lead, name, value)
    if snapshot.owner_id != lead.owner_id:
        at = snapshot.owner_changed_at or stamp
        events.append(_event(session, lead, at, "owner_changed", lead.owner_id, snapshot.owner_id,
                             f"owner:{lead.owner_id}->{snapshot.owner_id}@{at.isoformat()}"))
        lead.owner_id, lead.team_id = snapshot.owner_id, _team_of(session, snapshot.owner_id)

    # Activities and the state change are applied in the order they happened.
    changes: list[tuple[datetime, ProgressActivity | None]] = [(a.at, a) for a in snapshot.activities]
    if state != lead.state:
        changes.append((snapshot.status_changed_at or stamp, None))
    for at, activity in sorted(changes, key=lambda change: change[0]):
        event = _activity(session, book, lead, activity) if activity else _transition(
            session, book, policy, lead, state, at)
        if event is not None:
            events.append(event)
    lead.crm_status, lead.crm_modified_at = _clip(snapshot.crm_status, STATUS_WIDTH) or "", stamp
    return Applied(lead, events)


def _transition(session: Session, book: PolicyBook, policy: Policy, lead: Lead, new: str,
                at: datetime) -> LeadEvent:
    old = lead.state
    event = _event(session, lead, at, "state_changed", old, new, f"state:{old}->{new}@{at.isoformat()}")
    lead.state, lead.state_entered_at = new, at
    # A lead on compliance hold keeps its clocks paused whatever the CRM status says meanwhile (the
    # hold's own status write may not have landed yet, or a person moved it): only a decision clears it.
    pause = new in {s.value for s in policy.pause_states} or review_queue.on_compliance_hold(session, lead.id)
    for kind in clocks.KINDS:
        _move_clock(session, book, lead, event, kind, new, at, pause)
    return event


def _move_clock(session: Session, book: PolicyBook, lead: Lead, event: LeadEvent, kind: str, new: str,
                at: datetime, pause: bool) -> None:
    """One clock kind across a transition: pause, resume, or close and start afresh. Only the SLA
    clock knows progress; a stuck clock just ends when its state is left."""
    clock = clocks.open_clock_of(session, lead.id, kind)
    if pause:
        if clock is not None:
            clocks.pause(clock, book, session, at)
        return
    if clock is not None and clock.status == "paused" and clock.state == new:
        clocks.resume(clock, book, session, at)  # back from hold: consumed time is kept
        return
    if clock is not None:
        advanced = False
        if kind == clocks.SLA:
            clock_policy = book.get(session, clock.policy_version)
            advanced = f"state:{new}" in clock_policy.progress_kinds(LeadState(clock.state))
            if advanced:
                lead.last_progress_at = at
                event.detail = {"progress": True}
        clocks.close(clock, at, "progress" if advanced else "state_left")
    if is_canonical(new):
        clocks.start_clock(session, book, lead, at, kind)


def _activity(session: Session, book: PolicyBook, lead: Lead, activity: ProgressActivity) -> LeadEvent | None:
    key = f"activity:{activity.crm_id}"
    if session.scalars(select(LeadEvent.id).where(LeadEvent.lead_id == lead.id,
                                                  LeadEvent.dedupe_key == key)).first() is not None:
        return None
    if activity.kind is ProgressKind.FIRST_RESPONSE_TASK_COMPLETED and first_response.closed_by_sidecar(
            session, lead, activity.at):
        # The sidecar closed it when the lead changed hands: nobody responded, so it is no progress
        # (its own event kind: reports, outcomes and the timeline count "progress" events as responses).
        return _event(session, lead, activity.at, TASK_CLOSED_BY_SIDECAR, None, activity.kind.value, key,
                      {"by": activity.by, "activity_id": activity.crm_id})
    event = _event(session, lead, activity.at, "progress", None, activity.kind.value, key,
                   {"by": activity.by, "activity_id": activity.crm_id})
    lead.last_progress_at = max(filter(None, (lead.last_progress_at, activity.at)))
    # Progress resets the SLA clock only: a stuck clock counts the whole time in the state.
    clock = clocks.open_clock_of(session, lead.id, clocks.SLA)
    if clock is None or clock.status != "open" or activity.at < clock.started_at:
        return event
    if activity.kind.value in book.get(session, clock.policy_version).progress_kinds(LeadState(clock.state)):
        clocks.close(clock, activity.at, "progress")
        event.detail = {**event.detail, "reset_clock": clock.id}
        if activity.kind is ProgressKind.FIRST_RESPONSE_TASK_COMPLETED:
            # The first-response task is what the NEW window asked for: done, its ladder stops for good
            # (a logged call only restarts the window: the lead still waits for its next step).
            event.detail = {**event.detail, "first_response_done": True}
            return event
        clocks.start_clock(session, book, lead, activity.at, clocks.SLA)
    return event


def _merge(session: Session, lead: Lead, snapshot: LeadSnapshot, state: str) -> list[LeadEvent]:
    """The CRM merged `lead` into the record `snapshot.merged_into`. What an admin expects: the
    dead id stops escalating (its clock closes, reason "merged", and it takes the state the
    connector reports for it, normally CLOSED), and the survivor keeps the story: both timelines
    get a "merged" event naming the other lead, the survivor takes the later of the two progress
    times, and one audit row links both. Once per merge; the survivor itself arrives as its own
    snapshot (connectors send it first), its open clock, if any, carries on."""
    into = snapshot.merged_into
    key = f"merged_into:{into}"
    if session.scalars(select(LeadEvent.id).where(LeadEvent.lead_id == lead.id,
                                                  LeadEvent.dedupe_key == key)).first() is not None:
        return []
    at = max(snapshot.crm_modified_at, lead.crm_modified_at)
    survivor = session.scalars(select(Lead).where(Lead.crm == lead.crm, Lead.crm_id == into)).first()
    clock = clocks.open_clock_of(session, lead.id, "sla")
    for open_clock in (clock, clocks.open_clock_of(session, lead.id, "stuck")):
        if open_clock is not None:  # the merged-away id is gone: none of its clocks may fire
            clocks.close(open_clock, at, "merged")
    before = lead.state
    events = [_event(session, lead, at, "merged", lead.crm_id, into, key,
                     {"into_lead_id": survivor.id if survivor else None, "state_before": before,
                      "closed_clock_id": clock.id if clock else None})]
    if state != before:
        lead.state, lead.state_entered_at = state, at
    lead.crm_status, lead.crm_modified_at = _clip(snapshot.crm_status, STATUS_WIDTH) or "", at
    if survivor is not None:
        events.append(_event(session, survivor, at, "merged", lead.crm_id, survivor.crm_id,
                             f"merged_from:{lead.crm_id}", {"from_lead_id": lead.id, "state_before": before}))
        progress = [t for t in (survivor.last_progress_at, lead.last_progress_at) if t is not None]
        survivor.last_progress_at = max(progress) if progress else None
    audit.record(session, at=at, kind="lead_merged", lead=survivor or lead, step_key=f"merge:{lead.id}:{into}",
                 details={"merged_lead_id": lead.id, "merged_crm_id": lead.crm_id, "survivor_lead_id":
                          survivor.id if survivor else None, "survivor_crm_id": into, "state_before": before,
                          "closed_clock_id": clock.id if clock else None})
    return events


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _event(session: Session, lead: Lead, at: datetime, kind: str, old: str | None, new: str | None,
           key: str, detail: dict[str, Any] | None = None, *, first: bool = False) -> LeadEvent:
    """Append one event. Two real changes can share a CRM timestamp (score 10 then 20 within one
    second), so a key already taken gets a sequence suffix instead of failing the whole page.
    `first`: the lead was inserted just now and has no event yet (nothing to look up)."""
    taken = set() if first else set(session.scalars(select(LeadEvent.dedupe_key).where(
        LeadEvent.lead_id == lead.id, LeadEvent.dedupe_key.startswith(key))))
    unique, n = key, 1
    while unique in taken:
        n += 1
        unique = f"{key}#{n}"
    event = LeadEvent(lead_id=lead.id, at=at, kind=kind, old=_clip(old), new=_clip(new),
                      dedupe_key=unique[:200], detail=detail or {}, recorded_at=session.info.get(_RECORDED_AT))
    session.add(event)
    session.flush()
    return event


def _clip(value: str | None, width: int = 300) -> str | None:
    # PostgreSQL enforces column widths (SQLite does not): a long CRM value must not fail the page.
    return value if value is None or len(value) <= width else value[: width - 1] + "…"
