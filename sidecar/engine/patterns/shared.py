"""What every pattern shares: the engine context, the typed audit row, and the effects it enqueues.

A pattern decides *what* to do; these helpers write it down the same way for every pattern: one
audit row with typed columns, then outbox rows keyed after the decision (see `keys`), all in the
caller's transaction. Nothing here performs an effect; the dispatcher does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import audit, outbox
from sidecar.audit import Pattern, StepAction
from sidecar.domain import Crm, Persona
from sidecar.engine.patterns.keys import effect_key
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.policy.model import Policy
from sidecar.ports import PERSONAL_ROUTES, LeadContext, NoteRequest, Notification, OwnerChange, TaskRequest, Via
from sidecar.store import preloaded
from sidecar.store.models import AuditRow, Lead, OutboxRow, Rep, Team


@dataclass
class EngineContext:
    book: PolicyBook
    links: RecordLinks
    late_after: timedelta = timedelta(seconds=60)  # later than this after its due instant = "late"


def lead_context(session: Session, ctx: EngineContext, lead: Lead) -> LeadContext:
    owner = preloaded.get(session, Rep, lead.owner_id) if lead.owner_id else None
    return LeadContext(crm=Crm(lead.crm), crm_id=lead.crm_id, name=lead.name, company=lead.company,
                       market=lead.market, source=lead.source, intent=lead.intent, state=lead.state,
                       owner_id=lead.owner_id, owner_name=owner.name if owner else None,
                       record_url=ctx.links.url(lead.crm, lead.crm_id), email=lead.email)


def refresh_team(session: Session, lead: Lead) -> None:
    """The lead's team is its owner's team now (the directory may have been applied or changed since)."""
    owner = preloaded.get(session, Rep, lead.owner_id) if lead.owner_id else None
    if owner is not None and owner.team_id != lead.team_id:
        lead.team_id = owner.team_id


def record_step(session: Session, *, at: datetime, pattern: Pattern, action: StepAction | None, kind: str,
                lead: Lead, rule_id: str | None, policy_version: str | None, step_key: str,
                details: dict[str, Any],
                to_owner: str | None = None, elapsed_business_s: float | None = None,
                window_s: int | None = None, actor: str = "system") -> AuditRow:
    """The decision's audit row (idempotent by `step_key`). `kind` is the admin's label; `pattern`,
    `action` and `to_owner` are what code may branch on."""
    return audit.record(session, at=at, kind=kind, lead=lead, rule_id=rule_id, policy_version=policy_version,
                        elapsed_business_s=elapsed_business_s, window_s=window_s, actor=actor,
                        step_key=step_key, details=details, pattern=pattern, action=action, to_owner=to_owner)


def change_owner(session: Session, row: AuditRow, lead: Lead, context: LeadContext, to_owner_id: str,
                 now: datetime, *, key: str | None = None, depends_on: OutboxRow | None = None) -> OutboxRow:
    """Conditional owner change (refused by the connector if the CRM record moved since we read it)."""
    return outbox.enqueue(session, key=key or effect_key(_key(row), "owner"), now=now, audit_id=row.id,
                          depends_on=depends_on, request=OwnerChange(
                              lead=context, from_owner_id=lead.owner_id, to_owner_id=to_owner_id,
                              seen_modified_at=lead.crm_modified_at))


def ops_queue_of(session: Session, lead: Lead) -> str | None:
    team = preloaded.get(session, Team, lead.team_id) if lead.team_id else None
    return team.ops_queue_id if team is not None and team.ops_queue_id else None


def to_queue(session: Session, row: AuditRow, lead: Lead, context: LeadContext, now: datetime) -> OutboxRow | None:
    """Park the lead in its team's ops queue; None when the team has none."""
    queue = ops_queue_of(session, lead)
    if queue is None:
        return None
    return change_owner(session, row, lead, context, queue, now, key=effect_key(_key(row), "queue"))


def create_task(session: Session, row: AuditRow, request: TaskRequest, now: datetime, *,
                depends_on: OutboxRow | None = None) -> OutboxRow:
    return outbox.enqueue(session, key=effect_key(_key(row), "task", request.owner_id), now=now,
                          audit_id=row.id, depends_on=depends_on, request=request)


def add_note(session: Session, row: AuditRow, context: LeadContext, body: str, now: datetime) -> OutboxRow:
    return outbox.enqueue(session, key=effect_key(_key(row), "note"), now=now, audit_id=row.id,
                          request=NoteRequest(lead=context, at=now, body=body))


@dataclass(frozen=True)
class Message:
    """What a notification says, whoever receives it."""

    kind: str  # the admin's label: picks the message template
    rule_id: str
    policy_version: str
    due_at: datetime  # when the SLA breaches (or breached)
    window_s: int
    urgent: bool  # breaches and owner changes: never held for quiet hours, never snoozable
    snoozable: bool = False  # offer "Snooze 15 min" to the owner (ladder warnings only)
    new_owner: Rep | None = None  # set when this decision gave the lead to someone: Revert button
    extra: dict[str, str] | None = None


def notify(session: Session, ctx: EngineContext, policy: Policy, row: AuditRow, persona: Persona, lead: Lead,
           context: LeadContext, message: Message, now: datetime, *,
           depends_on: OutboxRow | None = None) -> OutboxRow | None:
    """Tell one persona (as the policy routes it); None when the persona has nobody (no new owner)."""
    route = policy.notifications[persona]
    team = preloaded.get(session, Team, lead.team_id) if lead.team_id else None
    recipient: Rep | None = None
    if persona is Persona.NEW_OWNER:
        if message.new_owner is None:
            return None  # nobody took the lead over: the manager hears about it instead
        recipient = message.new_owner
    elif persona is Persona.OWNER:
        recipient = preloaded.get(session, Rep, lead.owner_id) if lead.owner_id else None
    via = route_via(route.via, team)
    personal = via in PERSONAL_ROUTES
    if persona is Persona.MANAGER and personal and team and team.manager_id:
        recipient = preloaded.get(session, Rep, team.manager_id)
    elif persona is Persona.REGIONAL_VP and personal:
        recipient = regional_vp(session, lead)
    channel = route.channel if via == "channel" else (
        None if team is None else team.teams_workflow_env if via == "teams_channel" else team.slack_channel)
    market_code = team.market if team else lead.market
    tz = ctx.book.market(policy, market_code)[1].tz
    payload: dict[str, object] = {**(message.extra or {}), "state_since": lead.state_entered_at.isoformat()}
    if message.snoozable and persona is Persona.OWNER:
        payload["snooze_allowed"] = True  # a warning, to its owner: "give me 15 minutes" is fair
    if message.new_owner is not None:
        payload.update(new_owner_name=message.new_owner.name, from_owner_name=context.owner_name or "")
    not_before = None
    if route.quiet_hours and not message.urgent:
        # Quiet hours: a warning waits for the recipient's next business hour; breaches never wait.
        not_before = ctx.book.calendar(message.policy_version, policy, market_code).next_open(now)
    return outbox.enqueue(session, key=effect_key(_key(row), "notify", persona.value),
                          now=now, audit_id=row.id, depends_on=depends_on,
                          not_before=not_before, request=Notification(
                              kind=message.kind, persona=persona, via=via, lead=context,
                              rule_id=message.rule_id, policy_version=message.policy_version, at=now,
                              due_at=message.due_at, elapsed_business_s=row.elapsed_business_s or 0.0,
                              window_s=message.window_s, tz=tz,
                              recipient_email=recipient.email if recipient else None,
                              recipient_name=recipient.name if recipient else context.owner_name,
                              channel=channel, extra=payload, urgent=message.urgent,
                              reassignment=message.new_owner is not None))


# A team whose chat is Microsoft Teams (directory `chat: teams`) hears through Teams what the policy
# routes to a person or to the team; a named channel (`via: channel`) and pinned routes stay as written.
_TEAM_CHAT_ROUTES: dict[str, dict[str, Via]] = {"teams": {"slack_dm": "teams_chat", "team_channel": "teams_channel"}}


def route_via(via: Via, team: Team | None) -> Via:
    return _TEAM_CHAT_ROUTES.get((team.chat if team else None) or "slack", {}).get(via, via)


def regional_vp(session: Session, lead: Lead) -> Rep | None:
    """The VP of the lead's team if the directory names one there, else the org's VP."""
    vps = list(session.scalars(select(Rep).where(Rep.role == "vp", Rep.active.is_(True)).order_by(Rep.id)))
    return next((vp for vp in vps if vp.team_id == lead.team_id), vps[0] if vps else None)


def is_high_value(policy: Policy, lead: Lead) -> bool:
    rule = policy.high_value
    if rule is None:
        return False
    return ((rule.min_score is not None and lead.score is not None and lead.score >= rule.min_score)
            or (lead.tier is not None and lead.tier in rule.tiers)
            or (rule.min_deal_size is not None and lead.deal_size is not None and lead.deal_size >= rule.min_deal_size))


def _key(row: AuditRow) -> str:
    # Effects are keyed after their decision's step key; a decision without one has no stable effects.
    assert row.step_key is not None, "a decision with effects needs a step key"
    return row.step_key
