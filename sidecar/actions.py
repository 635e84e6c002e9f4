"""What a click on a notification's button does ("I'm on it", "Snooze 15 min", "Revert reassignment").

The Slack receiver (connectors.slack.actions) verifies and parses the click; this module gets plain
ids and decides. Who may do what:
- ack: the lead's current owner or the team's manager; audited once per (notification, person).
- snooze_15: the owner only, on a warning step (fraction < 1.0) of a clock that is still running,
  once per step; the pending step moves 15 minutes of wall time later.
- revert_reassignment: the team's manager only (Team.manager_id, or role manager/vp in the team).
Every refusal writes an `action_refused` row, so a later "I did click it!" can be checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.engine import clocks
from sidecar.engine.patterns import keys
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.revert import RevertError, revert_reassignment
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, Rep, Team

ACK, SNOOZE, REVERT = "ack", "snooze_15", "revert_reassignment"
ACKNOWLEDGED, SNOOZED, REFUSED = "notification_acknowledged", "notification_snoozed", "action_refused"
SNOOZE_DELAY = timedelta(minutes=15)
MANAGER_ROLES = frozenset({"manager", "vp"})
_KEY_LIMIT = 200  # AuditRow.step_key column width


@dataclass(frozen=True)
class ActionOutcome:
    text: str
    ephemeral: bool = True  # True: only the person who clicked sees the reply


@dataclass(frozen=True)
class _Click:
    action_id: str
    key: str  # the notification's idempotency key (from the button's value)
    slack_user_id: str
    now: datetime


class _Refused(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(reason)
        self.reason, self.text = reason, text  # reason: stable code for the audit; text: for the person


def handle_action(sessions: sessionmaker[Session], ctx: EngineContext, *, action_id: str, crm: str,
                  crm_id: str, idempotency_key: str, slack_user_id: str, slack_user_email: str | None,
                  now: datetime, lookup_failed: bool = False) -> ActionOutcome:
    """Apply one click in one transaction; the outcome's text is the reply shown in Slack.
    `lookup_failed`: Slack could not be asked who the (not yet linked) clicker is."""
    click = _Click(action_id, idempotency_key, slack_user_id, now)
    with transaction(sessions) as session:
        lead = session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()
        rep: Rep | None = None
        try:
            handler = _HANDLERS.get(action_id)
            if handler is None:
                raise _Refused("unknown_action", f"The sidecar does not know the button {action_id!r}.")
            if lead is None:
                raise _Refused("unknown_lead", f"The sidecar does not track {crm} lead {crm_id} (any more).")
            # The identity link is kept even when the click is refused: it is true either way.
            rep = identify(session, slack_user_id, slack_user_email, lead.crm)
            if rep is None and lookup_failed:
                raise _Refused("identity_unavailable", "Slack could not tell the sidecar who you are just now; "
                                                       "please click again in a minute.")
            if rep is None:
                raise _Refused("unknown_user", "Your Slack account is not linked to a sales rep known to the "
                                               "sidecar; ask RevOps to add your email to the directory.")
            if not rep.active:
                raise _Refused("inactive_user", f"{rep.name} is marked inactive in the sidecar's directory.")
            # A savepoint: if a handler refuses after writing, its writes go but the refusal row stays.
            with session.begin_nested():
                return handler(session, ctx, click, lead, rep)
        except _Refused as refusal:
            audit.record(session, at=now, kind=REFUSED, lead=lead, actor=slack_user_id, details={
                "action_id": action_id, "reason": refusal.reason, "message": refusal.text,
                "idempotency_key": idempotency_key, "rep_id": rep.id if rep else None})
            return ActionOutcome(refusal.text, ephemeral=True)


def is_linked(sessions: sessionmaker[Session], slack_user_id: str) -> bool:
    """Whether a rep already carries this Slack id (then Slack need not be asked for an e-mail)."""
    with transaction(sessions) as session:
        return session.scalars(select(Rep.id).where(Rep.slack_user_id == slack_user_id).limit(1)).first() \
            is not None


def identify(session: Session, slack_user_id: str, email: str | None, crm: str) -> Rep | None:
    """The rep behind a Slack user: by stored Slack id, else by email (and then remember the id)."""
    reps = list(session.scalars(select(Rep).where(Rep.slack_user_id == slack_user_id)))
    if not reps and email and email.strip():
        by_email = session.scalars(select(Rep).where(func.lower(Rep.email) == email.strip().lower()))
        # A rep already linked to another Slack user is not taken over just because an email matches.
        reps = [rep for rep in by_email if rep.slack_user_id is None]
        for rep in reps:
            rep.slack_user_id = slack_user_id
    # One person may be a rep in both CRMs: prefer the record of the lead's CRM, then active ones.
    reps.sort(key=lambda rep: (rep.crm != crm, not rep.active, rep.id))
    return reps[0] if reps else None


def manages(session: Session, rep: Rep, lead: Lead) -> bool:
    """Whether `rep` leads the lead's team (the team named on the lead, else its owner's team)."""
    team_id = lead.team_id
    if team_id is None and lead.owner_id is not None:
        owner = session.get(Rep, lead.owner_id)
        team_id = owner.team_id if owner is not None else None
    if team_id is None:
        return False
    team = session.get(Team, team_id)
    if team is not None and team.manager_id == rep.id:
        return True
    return rep.role in MANAGER_ROLES and rep.team_id == team_id


def _ack(session: Session, ctx: EngineContext, click: _Click, lead: Lead, rep: Rep) -> ActionOutcome:
    if rep.id != lead.owner_id and not manages(session, rep, lead):
        raise _Refused("not_owner", f"Only {lead.name}'s owner or the team's manager can take this one.")
    step = _step_row(session, click.key, lead)
    step_key = _bounded(keys.ack_key(click.key, rep.id))
    earlier = session.scalars(select(AuditRow).where(AuditRow.step_key == step_key)).first()
    if earlier is not None:  # a double click or a Slack retry: one row per person and notification
        return ActionOutcome(f"You already said you're on {lead.name} (at {earlier.at.astimezone(UTC):%H:%M} UTC).")
    audit.record(session, at=click.now, kind=ACKNOWLEDGED, lead=lead, actor=rep.id, step_key=step_key,
                 rule_id=step.rule_id if step else None, policy_version=step.policy_version if step else None,
                 details={"idempotency_key": click.key, "slack_user_id": click.slack_user_id,
                          "step_audit_id": step.id if step else None})
    # Saying so is not progress: only a logged call or email stops the clock (seed: real events only).
    return ActionOutcome(f"Thanks, {rep.name}: noted that you're on {lead.name}. The SLA clock keeps "
                         "running until a call or email is logged in the CRM.")


def _snooze(session: Session, ctx: EngineContext, click: _Click, lead: Lead, rep: Rep) -> ActionOutcome:
    if rep.id != lead.owner_id:
        raise _Refused("not_owner", f"Only {lead.name}'s current owner can snooze this reminder.")
    step = _step_row(session, click.key, lead)
    ladder_step = keys.parse_step_key(step.step_key or "") if step is not None else None
    if step is None or ladder_step is None:
        raise _Refused("not_a_ladder_step", "This message is not an SLA reminder that can be snoozed.")
    clock_id, index = ladder_step
    clock = session.get(Clock, clock_id)
    if clock is not None and clock.kind != clocks.SLA:  # a stuck-lead reminder is not an SLA step
        raise _Refused("not_a_ladder_step", "This message is not an SLA reminder that can be snoozed.")
    if clock is None or clock.lead_id != lead.id or clock.status != "open" or clock.next_due_at is None:
        raise _Refused("clock_not_running", f"{lead.name}'s SLA clock is not running, so there is nothing "
                                            "to snooze.")
    ladder = ctx.book.get(session, clock.policy_version).ladder_of(clock.ladder)
    # Same rule as the ladder's "urgent": breaches and reassignments are never snoozable.
    if index >= len(ladder) or ladder[index].at >= 1.0 or ladder[index].reassign is not None:
        raise _Refused("breach_step", "The SLA is already breached; a breach cannot be snoozed.")
    if clock.steps_fired != index + 1:  # a later step fired since this message was sent
        raise _Refused("stale_notification", "This reminder is out of date; the lead has escalated since.")
    snooze_key = keys.snooze_key(step.step_key or "")
    earlier = session.scalars(select(AuditRow).where(AuditRow.step_key == snooze_key)).first()
    if earlier is not None:
        when = earlier.at.astimezone(UTC)
        raise _Refused("already_snoozed", f"This reminder was snoozed already (at {when:%H:%M} UTC); each step "
                                          "can be snoozed once.")
    before = clock.next_due_at.astimezone(UTC)
    after = clocks.snooze(clock, SNOOZE_DELAY).astimezone(UTC)
    audit.record(session, at=click.now, kind=SNOOZED, lead=lead, actor=rep.id, step_key=snooze_key,
                 rule_id=step.rule_id, policy_version=clock.policy_version,
                 details={"idempotency_key": click.key, "slack_user_id": click.slack_user_id,
                          "clock_id": clock.id, "step": index, "step_audit_id": step.id,
                          "from_due_at": before.isoformat(), "to_due_at": after.isoformat(),
                          "delay_s": int(SNOOZE_DELAY.total_seconds())})
    return ActionOutcome(f"Snoozed: the next escalation for {lead.name} moves from {before:%H:%M} to "
                         f"{after:%H:%M} UTC. This reminder cannot be snoozed again.")


def _revert(session: Session, ctx: EngineContext, click: _Click, lead: Lead, rep: Rep) -> ActionOutcome:
    if not manages(session, rep, lead):
        raise _Refused("not_manager", "Only the team's manager can revert a reassignment.")
    _step_row(session, click.key, lead)  # refuses a button whose notification is about another lead
    try:
        row = revert_reassignment(session, ctx, lead.crm, lead.crm_id, rep.id,
                                  f"reverted from Slack by {click.slack_user_id} (notification {click.key})",
                                  click.now)
    except RevertError as err:
        raise _Refused("nothing_to_revert", str(err)) from None
    back_to = session.get(Rep, str(row.details["to_owner"]))
    name = back_to.name if back_to is not None else str(row.details["to_owner"])
    # Visible to the channel: the team should see that the automatic reassignment was undone.
    return ActionOutcome(f"{rep.name} reverted the reassignment: {lead.name} goes back to {name} with a "
                         f"fresh SLA window (audit #{row.id}).", ephemeral=False)


def _step_row(session: Session, key: str, lead: Lead) -> AuditRow | None:
    """The decision behind the notification `key`; None if no such outbox row is stored."""
    row = session.scalars(select(OutboxRow).where(OutboxRow.idempotency_key == key)).first()
    if row is None or row.audit_id is None:
        return None
    decision = session.get(AuditRow, row.audit_id)
    if decision is not None and decision.lead_id != lead.id:
        # Slack signs the request, not our button value's meaning: never act on a mismatched pair.
        raise _Refused("notification_mismatch", "This button does not belong to that lead.")
    return decision


def _bounded(key: str) -> str:
    if len(key) <= _KEY_LIMIT:
        return key
    return f"{key[:20]}#{hashlib.sha256(key.encode()).hexdigest()}"


_HANDLERS: dict[str, Callable[[Session, EngineContext, _Click, Lead, Rep], ActionOutcome]] = {
    ACK: _ack, SNOOZE: _snooze, REVERT: _revert,
}
