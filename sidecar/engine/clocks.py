"""SLA clocks: start, pause, resume, close, and the precomputed `next_due_at`.

A clock counts business seconds in the lead's market. `consumed_s` holds what was used before
`running_since`; while running, used time = consumed_s + elapsed(running_since, now). The next
ladder step is due when used time reaches `at * window_s`, and `next_due_at` is that instant,
computed once with `BusinessCalendar.add` so that a tick only ever looks at what is due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.domain import Intent, LeadState
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import Policy, duration_seconds
from sidecar.store.models import Clock, Lead


def open_clock_of(session: Session, lead_id: int, kind: str = "sla") -> Clock | None:
    """The lead's running or paused clock (at most one per kind)."""
    return session.scalars(
        select(Clock).where(Clock.lead_id == lead_id, Clock.kind == kind, Clock.status != "closed")
    ).first()


def start_clock(session: Session, book: PolicyBook, lead: Lead, started_at: datetime) -> Clock | None:
    """Start the clock for the lead's current state under the newest policy; None if no window."""
    version, policy = book.active(session)
    intent = Intent(lead.intent) if lead.intent else None
    rule = policy.window_for(lead.market, lead.source, LeadState(lead.state), intent)
    if rule is None:
        return None
    window_s, base_window_s, factor = tightened(policy, lead, duration_seconds(rule.window, book.business_day(
        policy, lead.market)))
    # Leads already waiting when the sidecar went live get a full window from then, not an instant
    # escalation for time nobody was watching (a first backfill would otherwise breach them all at once).
    go_live = book.go_live(session)
    if go_live is not None and started_at < go_live:
        started_at = go_live
    clock = Clock(
        lead_id=lead.id, kind="sla", state=lead.state, rule_id=rule.id, policy_version=version,
        market=book.market(policy, lead.market)[0], window_s=window_s, started_at=started_at,
        consumed_s=0.0, running_since=started_at, steps_fired=0, status="open",
        base_window_s=base_window_s, window_factor=factor,
    )
    plan(clock, book, session)
    session.add(clock)
    return clock


def tightened(policy: Policy, lead: Lead, window_s: int) -> tuple[int, int | None, float | None]:
    """(window, original window, factor): a lead flagged high-value (seed 000 pattern 3) gets every
    clock started after the flag shortened by the policy's `high_value.window_factor`; any other lead
    keeps its window untouched (original and factor None)."""
    rule = policy.high_value
    if lead.high_value_at is None or rule is None or rule.window_factor >= 1.0:
        return window_s, None, None
    return max(1, round(window_s * rule.window_factor)), window_s, rule.window_factor


def used_seconds(clock: Clock, book: PolicyBook, session: Session, now: datetime) -> float:
    """Business seconds of the window used so far."""
    if clock.running_since is None or now <= clock.running_since:
        return clock.consumed_s
    policy = book.get(session, clock.policy_version)
    calendar = book.calendar(clock.policy_version, policy, clock.market)
    return clock.consumed_s + calendar.elapsed(clock.running_since, now).total_seconds()


def due_at(clock: Clock, book: PolicyBook, session: Session, step_index: int) -> datetime | None:
    """The instant ladder step `step_index` crosses, if the clock keeps running from now on."""
    policy = book.get(session, clock.policy_version)
    if clock.running_since is None or step_index >= len(policy.ladder):
        return None
    target = policy.ladder[step_index].at * clock.window_s
    remaining = max(0.0, target - clock.consumed_s)
    calendar = book.calendar(clock.policy_version, policy, clock.market)
    return calendar.add(clock.running_since, timedelta(seconds=remaining))


def breach_at(clock: Clock, book: PolicyBook, session: Session) -> datetime:
    """The instant the window runs out (100 %), if the clock keeps running from now on."""
    policy = book.get(session, clock.policy_version)
    calendar = book.calendar(clock.policy_version, policy, clock.market)
    start = clock.running_since or clock.started_at
    return calendar.add(start, timedelta(seconds=max(0.0, clock.window_s - clock.consumed_s)))


def plan(clock: Clock, book: PolicyBook, session: Session) -> None:
    clock.next_due_at = due_at(clock, book, session, clock.steps_fired) if clock.status == "open" else None


def pause(clock: Clock, book: PolicyBook, session: Session, at: datetime) -> None:
    if clock.status != "open":
        return
    clock.consumed_s = used_seconds(clock, book, session, at)
    clock.running_since, clock.status, clock.next_due_at = None, "paused", None


def resume(clock: Clock, book: PolicyBook, session: Session, at: datetime) -> None:
    if clock.status != "paused":
        return
    clock.running_since, clock.status = at, "open"
    plan(clock, book, session)


def close(clock: Clock, at: datetime, reason: str) -> None:
    clock.status, clock.closed_at, clock.close_reason = "closed", at, reason
    clock.running_since, clock.next_due_at = None, None


def snooze(clock: Clock, delay: timedelta) -> datetime:
    """Push the pending step's `next_due_at` by `delay` of wall time; returns the new instant.

    Only the step that is pending now moves: the next `plan` (after that step fires, or on a pause
    and resume) computes from business time again, so a snooze never shifts the rest of the ladder.
    """
    if clock.status != "open" or clock.next_due_at is None:
        raise ValueError(f"clock {clock.id} has no pending step to snooze")
    clock.next_due_at = clock.next_due_at + delay
    return clock.next_due_at


def recompute(session: Session, book: PolicyBook, now: datetime) -> int:
    """Move running and paused clocks onto the active policy, on purpose (`policy apply --recompute`).

    Business time already used is kept and steps already fired stay fired; the window, the rule and
    the version change, and the next step is planned again. Returns how many clocks moved.
    """
    version, policy = book.active(session)
    moved = 0
    for clock in session.scalars(select(Clock).where(Clock.status != "closed", Clock.policy_version != version)):
        lead = session.get(Lead, clock.lead_id)
        assert lead is not None
        intent = Intent(lead.intent) if lead.intent else None
        rule = policy.window_for(lead.market, lead.source, LeadState(clock.state), intent)
        if rule is None:
            close(clock, now, "no window in the new policy")
            continue
        if clock.status == "open":
            clock.consumed_s, clock.running_since = used_seconds(clock, book, session, now), now
        old_version = clock.policy_version
        clock.policy_version, clock.rule_id = version, rule.id
        clock.window_s, clock.base_window_s, clock.window_factor = tightened(
            policy, lead, duration_seconds(rule.window, book.business_day(policy, lead.market)))
        clock.market = book.market(policy, lead.market)[0]
        # Keep what was already said: the new ladder's steps up to the highest fraction already fired.
        old_ladder = book.get(session, old_version).ladder
        fired = old_ladder[clock.steps_fired - 1].at if clock.steps_fired else 0.0
        clock.steps_fired = sum(1 for step in policy.ladder if step.at <= fired)
        plan(clock, book, session)
        moved += 1
    return moved
