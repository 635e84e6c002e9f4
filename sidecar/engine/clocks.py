"""Clocks (SLA and stuck-lead): start, pause, resume, close, and the precomputed `next_due_at`.

Two kinds run side by side per lead: "sla" (the ladder, at fractions of the window; reset by
progress) and "stuck" (at multiples of the same window, reset only by leaving the state). Both
are planned the same way from their kind's thresholds (`thresholds`).

A clock counts business seconds in the lead's market. `consumed_s` holds what was used before
`running_since`; while running, used time = consumed_s + elapsed(running_since, now). The next
ladder step is due when used time reaches `at * window_s`, and `next_due_at` is that instant,
computed once with `BusinessCalendar.add` so that a tick only ever looks at what is due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.domain import TERMINAL_STATES, Intent, LeadState
from sidecar.engine.policies import PolicyBook
from sidecar.policy.markets import duration_seconds
from sidecar.policy.model import Policy
from sidecar.store.models import Clock, Lead


def open_clock_of(session: Session, lead_id: int, kind: str) -> Clock | None:
    """The lead's running or paused clock (at most one per kind)."""
    return session.scalars(
        select(Clock).where(Clock.lead_id == lead_id, Clock.kind == kind, Clock.status != "closed")
    ).first()


SLA, STUCK = "sla", "stuck"
KINDS = (SLA, STUCK)


def thresholds(policy: Policy, kind: str, ladder: str | None = None) -> list[float]:
    """When each step of a clock of `kind` is due, as multiples of its window, in firing order:
    the stuck multiples, or the fractions of the clock's ladder (its intent tier's, else the main one)."""
    if kind == STUCK:
        return sorted(step.multiple for step in policy.stuck)
    return [step.at for step in policy.ladder_of(ladder)]


def _window(book: PolicyBook, policy: Policy, lead: Lead, state: str) -> tuple[str, int, str | None] | None:
    """(rule id, window seconds, tier ladder) for a clock of `lead` in `state`; None if no window."""
    intent = Intent(lead.intent) if lead.intent else None
    rule = policy.window_for(lead.market, lead.source, LeadState(state), intent)
    if rule is None:
        return None
    ladder = policy.tier_ladder(lead.intent, state)
    tier = policy.tier(ladder)
    if tier is not None and tier.window is not None:
        # The tier's own first-response window (seed 002: high intent 15 minutes); the rule id
        # names the tier so that the audit says which window applied.
        return f"intent.tiers.{ladder}", duration_seconds(tier.window, book.business_day(policy, lead.market)), ladder
    return rule.id, duration_seconds(rule.window, book.business_day(policy, lead.market)), ladder


def start_clock(session: Session, book: PolicyBook, lead: Lead, started_at: datetime,
                kind: str = SLA) -> Clock | None:
    """Start the clock for the lead's current state under the newest policy; None if no window
    (and, for a stuck clock, none in a terminal state or without stuck steps)."""
    version, policy = book.active(session)
    if kind == STUCK and (not policy.stuck or LeadState(lead.state) in TERMINAL_STATES):
        return None
    window = _window(book, policy, lead, lead.state)
    if window is None:
        return None
    rule_id, window_s, ladder = window
    window_s, base_window_s, factor = tightened(policy, lead, kind, window_s)
    # Leads already waiting when the sidecar went live get a full window from then, not an instant
    # escalation for time nobody was watching (a first backfill would otherwise breach them all at once).
    go_live = book.go_live(session)
    if go_live is not None and started_at < go_live:
        started_at = go_live
    clock = Clock(
        lead_id=lead.id, kind=kind, state=lead.state, rule_id=rule_id, policy_version=version,
        market=book.market(policy, lead.market)[0], window_s=window_s, started_at=started_at,
        consumed_s=0.0, running_since=started_at, steps_fired=0, status="open",
        ladder=ladder if kind == SLA else None,  # a stuck clock follows the stuck multiples, not a tier ladder
        base_window_s=base_window_s, window_factor=factor,
    )
    plan(clock, book, session)
    session.add(clock)
    return clock


def tightened(policy: Policy, lead: Lead, kind: str, window_s: int) -> tuple[int, int | None, float | None]:
    """(window, original window, factor): a lead flagged high-value (seed 000 pattern 3) gets every
    SLA clock started after the flag shortened by the policy's `high_value.window_factor`; any other
    lead, and every stuck clock, keeps its window untouched (original and factor None). Stuck clocks
    are left alone on purpose: the seed tightens "the SLA window for subsequent state transitions",
    and a stuck clock sends the lead to ops review, which a high-value lead should not reach sooner
    merely for being valuable (the pattern's own failure mode: escalations that feel intrusive)."""
    rule = policy.high_value
    if kind != SLA or lead.high_value_at is None or rule is None or rule.window_factor >= 1.0:
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
    """The instant step `step_index` (of the ladder, or of the stuck steps) crosses, if the clock
    keeps running from now on."""
    policy = book.get(session, clock.policy_version)
    steps = thresholds(policy, clock.kind, clock.ladder)
    if clock.running_since is None or step_index >= len(steps):
        return None
    # Rounded to the millisecond: a step timed "10m" of a 15m window is stored as the fraction 2/3,
    # whose product with the window must land on the exact minute (no effect on whole seconds).
    target = round(steps[step_index] * clock.window_s, 3)
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
        window = _window(book, policy, lead, clock.state)
        if window is None:
            close(clock, now, "no window in the new policy")
            continue
        if clock.status == "open":
            clock.consumed_s, clock.running_since = used_seconds(clock, book, session, now), now
        old_steps = thresholds(book.get(session, clock.policy_version), clock.kind, clock.ladder)
        clock.policy_version, (clock.rule_id, window_s, clock.ladder) = version, window
        clock.window_s, clock.base_window_s, clock.window_factor = tightened(policy, lead, clock.kind, window_s)
        if clock.kind == STUCK:
            clock.ladder = None  # stuck clocks follow the stuck multiples, never a tier ladder
        clock.market = book.market(policy, lead.market)[0]
        # Keep what was already said: the new steps up to the highest fraction (multiple) already fired.
        fired = old_steps[clock.steps_fired - 1] if clock.steps_fired else 0.0
        clock.steps_fired = sum(1 for at in thresholds(policy, clock.kind, clock.ladder) if at <= fired)
        plan(clock, book, session)
        moved += 1
    return moved
