"""What `sidecar status` reports: overdue and due-soon leads by name, the outbox, each CRM's last poll."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.data_quality import UnknownValue, unknown_values
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import AuditRow, Clock, IntakeItem, Lead, OutboxRow, Rep, SyncCursor, Team
from sidecar.web.dashboard.ladder import ladders

SOON = timedelta(hours=1)


@dataclass(frozen=True)
class LeadLine:
    """One lead to act on: who, whose, which rule is next and when (negative: overdue by that much)."""

    crm: str
    crm_id: str
    name: str
    owner: str  # the owner's name, else the id
    team: str
    rule_id: str  # the next step's rule (overdue: the breach rule that fired)
    left: timedelta  # until the next step; overdue leads: minus the time since the breach


@dataclass(frozen=True)
class PollState:
    crm: str
    last_ok: datetime | None  # last successful poll
    last_attempt: datetime | None
    error: str | None  # why the last poll failed; None: it succeeded (or never ran)
    failing_since: datetime | None


@dataclass(frozen=True)
class Status:
    open_clocks: int
    paused_clocks: int
    due_next_hour: int
    outbox: dict[str, int]
    dead: list[tuple[str, str, str]]  # (key, action, reason), newest first
    last_polls: dict[str, datetime | None]
    # Webhook-announced ids the CRM refused to read, set aside: (crm, id, why), newest first.
    dead_intake: list[tuple[str, str, str]] = field(default_factory=list)
    overdue: list[LeadLine] = field(default_factory=list)  # longest overdue first
    due: list[LeadLine] = field(default_factory=list)  # soonest first, within the next hour
    polls: list[PollState] = field(default_factory=list)
    # CRM values the policy or directory does not know, one line per value (sidecar.data_quality).
    unknown: list[UnknownValue] = field(default_factory=list)
    # The oldest effect still waiting for its CRM or Slack (None: no backlog): how far delivery is behind.
    oldest_pending: datetime | None = None


def _leads(session: Session, book: PolicyBook, now: datetime) -> tuple[list[LeadLine], list[LeadLine]]:
    """SLA clocks past their breach step (overdue) and those with a step due within the hour."""
    facts = ladders(session, book)
    reps = {str(rep_id): str(name) for rep_id, name in session.execute(select(Rep.id, Rep.name))}
    teams = {str(team_id): str(name) for team_id, name in session.execute(select(Team.id, Team.name))}
    overdue: list[LeadLine] = []
    due: list[LeadLine] = []
    rows = session.execute(select(Clock, Lead).join(Lead, Lead.id == Clock.lead_id)
                           .where(Clock.kind == "sla", Clock.status == "open")).all()
    for clock, lead in rows:
        owner = reps.get(lead.owner_id or "", lead.owner_id or "nobody")
        team = teams.get(lead.team_id or "", lead.team_id or "-")
        if facts.breached(clock):
            breach_rule = facts.breach_rule[clock.policy_version]
            breached_at = session.scalar(select(func.max(AuditRow.at)).where(
                AuditRow.lead_id == lead.id, AuditRow.rule_id == breach_rule,
                AuditRow.at >= clock.started_at)) or clock.started_at
            overdue.append(LeadLine(lead.crm, lead.crm_id, lead.name, owner, team, breach_rule, breached_at - now))
        elif clock.next_due_at is not None and clock.next_due_at <= now + SOON:
            rule = facts.pending_rule(clock) or clock.rule_id
            due.append(LeadLine(lead.crm, lead.crm_id, lead.name, owner, team, rule, clock.next_due_at - now))
    return sorted(overdue, key=lambda line: line.left), sorted(due, key=lambda line: line.left)


def gather(session: Session, now: datetime, dead_limit: int = 10, book: PolicyBook | None = None) -> Status:
    # SLA clocks: what "running" and "due" mean to an admin; stuck-lead clocks run beside them.
    clocks = dict(session.execute(select(Clock.status, func.count()).where(Clock.kind == "sla")
                                  .group_by(Clock.status)).all())
    due = session.scalar(select(func.count()).select_from(Clock).where(
        Clock.kind == "sla", Clock.status == "open", Clock.next_due_at <= now + SOON)) or 0
    outbox = dict(session.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)).all())
    dead = [(row.idempotency_key, row.action, row.last_error or "") for row in session.scalars(
        select(OutboxRow).where(OutboxRow.status == "dead").order_by(OutboxRow.done_at.desc())
        .limit(dead_limit))]
    cursors = list(session.scalars(select(SyncCursor).where(SyncCursor.stream == "leads").order_by(SyncCursor.crm)))
    polls = {row.crm: row.last_poll_at for row in cursors}
    dead_intake = [(row.crm, row.crm_id, row.error or "") for row in session.scalars(
        select(IntakeItem).where(IntakeItem.error.is_not(None)).order_by(IntakeItem.id.desc()).limit(dead_limit))]
    book = book or PolicyBook()
    overdue, soon = _leads(session, book, now)
    try:
        policy = book.active(session)[1]
    except LookupError:
        policy = None  # no policy yet: only what needs none (statuses, owners) is reported
    oldest = session.scalar(select(func.min(OutboxRow.created_at))
                            .where(OutboxRow.status.in_(("pending", "in_flight"))))
    return Status(int(clocks.get("open", 0)), int(clocks.get("paused", 0)), int(due),
                  {str(k): int(v) for k, v in outbox.items()}, dead, polls, dead_intake, overdue, soon,
                  [PollState(c.crm, c.last_poll_at, c.last_attempt_at, c.last_error, c.failing_since)
                   for c in cursors], unknown_values(session, policy), oldest)


def duration_words(span: timedelta) -> str:
    """'1 h 05 min', '12 min', 'under a minute' for a positive span."""
    minutes = int(abs(span).total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def poll_words(poll: PollState, now: datetime) -> str:
    """One line per CRM: the last poll's result, and the error when it failed."""
    ok = (f"last good poll {poll.last_ok:%Y-%m-%d %H:%M} UTC ({duration_words(now - poll.last_ok)} ago)"
          if poll.last_ok else "no successful poll yet")
    if poll.error:
        since = f" since {poll.failing_since:%Y-%m-%d %H:%M} UTC" if poll.failing_since else ""
        return f"{poll.crm}: FAILING{since}: {poll.error}; {ok}"
    return f"{poll.crm}: ok; {ok}"
