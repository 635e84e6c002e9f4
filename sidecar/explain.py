"""Why a lead was (or was not) escalated, in plain lines: `sidecar explain` and the dashboard's lead page.

For each clock: the window rule that matched and why it beat the others, the calendar arithmetic
(open periods counted, closed periods and holidays skipped, DST changes), then each ladder step: when
it was due, whether it fired, what it did and what happened to each of its effects. A step that never
fired says why (the clock stopped first), which answers "I never got a warning".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.calendar import BusinessCalendar
from sidecar.domain import Intent, LeadState
from sidecar.engine import clocks
from sidecar.engine.patterns import keys
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import Policy, WindowRule
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, PolicyVersion, Rep

MAX_INTERVALS = 12  # open periods listed per clock; a 5-business-day window would list dozens


def duration(seconds: float) -> str:
    """Hours and minutes only: "1d" would read as a calendar day, and these are business hours."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _local(at: datetime, calendar: BusinessCalendar) -> str:
    return at.astimezone(calendar.tz).strftime("%a %d %b %H:%M %Z")


def _rep(session: Session, rep_id: str | None) -> str:
    rep = session.get(Rep, rep_id) if rep_id else None
    return f"{rep.name} ({rep.id})" if rep else (rep_id or "nobody")


def _scope(rule: WindowRule) -> str:
    return ", ".join(f"{name} {value}" for name, value in (("state", rule.state.value), ("market", rule.market),
                                                            ("source", rule.source), ("intent", rule.intent)))


def _window_lines(policy: Policy, clock: Clock, lead: Lead) -> list[str]:
    intent = Intent(lead.intent) if lead.intent else None
    matching = [(i, rule) for i, rule in enumerate(policy.windows)
                if rule.matches(lead.market, lead.source, LeadState(clock.state), intent)]
    chosen = next(((i, rule) for i, rule in matching if rule.id == clock.rule_id), None)
    if chosen is None:
        return [f"  window rule {clock.rule_id}: {duration(clock.window_s)} of business time (the lead's fields "
                "have changed since; the rule matched what the lead was then)"]
    index, rule = chosen
    lines = [f"  window rule {rule.id}: {rule.window} = {duration(clock.window_s)} of business time; matched "
             f"{_scope(rule)} (specificity {rule.specificity()}, rule {index + 1} in the file)"]
    for other_index, other in matching:
        if other.id == rule.id:
            continue
        why = (f"less specific ({other.specificity()} < {rule.specificity()})"
               if other.specificity() < rule.specificity() else
               f"as specific ({other.specificity()}) but later in the file (rule {other_index + 1})")
        lines.append(f"    beat {other.id} ({other.window}): {why}")
    if len(matching) == 1:
        lines.append("    no other window rule matched this lead")
    return lines


def _calendar_lines(calendar: BusinessCalendar, market: str, start: datetime, end: datetime) -> list[str]:
    spans = calendar.open_intervals(start, end)
    counted = sum((b - a for a, b in spans), timedelta())
    lines = [f"  calendar {market} ({calendar.tz.key}): {duration(counted.total_seconds())} of business time "
             f"between {_local(start, calendar)} and {_local(end, calendar)}"]
    previous_end, previous_offset = start, start.astimezone(calendar.tz).utcoffset()
    for n, (a, b) in enumerate(spans):
        if a > previous_end:
            lines.append(f"    skipped {_local(previous_end, calendar)} → {_local(a, calendar)}: "
                         f"{_closed_reason(calendar, previous_end, a)}")
        offset = a.astimezone(calendar.tz).utcoffset()
        if offset != previous_offset:
            lines.append(f"    DST: the clock changed before {_local(a, calendar)} "
                         f"(UTC offset {_offset(previous_offset)} → {_offset(offset)}); hours are wall-clock hours")
            previous_offset = offset
        if n < MAX_INTERVALS:
            lines.append(f"    counted {_local(a, calendar)} – {b.astimezone(calendar.tz):%H:%M} "
                         f"({duration((b - a).total_seconds())})")
        elif n == MAX_INTERVALS:
            lines.append(f"    ... and {len(spans) - MAX_INTERVALS} more open periods")
        previous_end = b
    return lines


def _offset(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _closed_reason(calendar: BusinessCalendar, start: datetime, end: datetime) -> str:
    """Why nothing counted between two open periods: outside hours, and which holidays fell inside."""
    first, last = start.astimezone(calendar.tz).date(), end.astimezone(calendar.tz).date()
    holidays = [first + timedelta(days=i) for i in range((last - first).days + 1)
                if calendar.is_holiday(first + timedelta(days=i))]
    if holidays:
        return "closed (holiday " + ", ".join(f"{d:%a %d %b}" for d in holidays) + ")"
    return "closed (outside business hours)"


def _effect_line(effect: OutboxRow) -> str:
    target = effect.recipient or str(effect.payload.get("persona") or "")
    what = effect.action.replace("_", " ") + (f" → {target}" if target else "")
    if effect.status == "done":
        outcome = f"done{f' ({effect.result})' if effect.result else ''}"
    elif effect.status == "dead":
        outcome = f"failed after {effect.attempts} attempts: {effect.last_error or 'no reason recorded'}"
    elif effect.status == "skipped":
        outcome = f"skipped: {effect.last_error or ''}".rstrip(": ")
    else:
        error = f", last error: {effect.last_error}" if effect.last_error else ""
        outcome = f"{effect.status} (attempts {effect.attempts}{error})"
    return f"      effect {what}: {outcome}"


def _clock_lines(session: Session, book: PolicyBook, clock: Clock, lead: Lead, now: datetime) -> list[str]:
    policy = book.get(session, clock.policy_version)
    calendar = book.calendar(clock.policy_version, policy, clock.market)
    label = (session.get(PolicyVersion, clock.policy_version) or PolicyVersion(label="")).label
    status = (f"closed {_local(clock.closed_at, calendar)} ({clock.close_reason})" if clock.closed_at
              else clock.status)
    lines = [f"clock #{clock.id} ({clock.kind}, {clock.state}) under policy {clock.policy_version}"
             + (f" {label!r}" if label else "") + f": started {_local(clock.started_at, calendar)}, {status}"]
    lines += _window_lines(policy, clock, lead)
    end = clock.closed_at or now
    lines += _calendar_lines(calendar, clock.market or "-", clock.started_at, max(end, clock.started_at))
    # The clock's own steps: a stuck clock follows the stuck multiples, an SLA clock its (tier's) ladder.
    steps = ([(step.id, step.multiple) for step in sorted(policy.stuck, key=lambda s: s.multiple)]
             if clock.kind == clocks.STUCK else [(step.id, step.at) for step in policy.ladder_of(clock.ladder)])
    for index, (step_id, at) in enumerate(steps):
        due = calendar.add(clock.started_at, timedelta(seconds=at * clock.window_s))
        head = (f"    step {index + 1} {step_id} at {at:.0%} ({duration(at * clock.window_s)} business): "
                f"due {_local(due, calendar)}")
        row = session.scalars(select(AuditRow).where(AuditRow.step_key == keys.step_key(clock.id, index))).first()
        if row is None:
            if clock.closed_at is not None:
                lines.append(f"{head}; not fired: the clock closed first ({clock.close_reason}, "
                             f"{_local(clock.closed_at, calendar)})")
            elif clock.status == "paused":
                lines.append(f"{head} if never paused; not fired: the clock is paused")
            else:
                lines.append(f"{head} (without pauses or snoozes); not fired yet")
            continue
        used = f", {duration(row.elapsed_business_s)} used" if row.elapsed_business_s is not None else ""
        lines.append(f"{head}; fired {_local(row.at, calendar)} (audit #{row.id} {row.kind}{used}), "
                     f"did: {row.action or 'nothing'}" + (f" to {_rep(session, row.to_owner)}" if row.to_owner else ""))
        lines += [_effect_line(effect) for effect in session.scalars(
            select(OutboxRow).where(OutboxRow.audit_id == row.id).order_by(OutboxRow.id))]
    return lines


def explain(session: Session, book: PolicyBook, crm: str, crm_id: str, now: datetime) -> list[str]:
    lead = session.scalars(select(Lead).where(Lead.crm == crm, Lead.crm_id == crm_id)).first()
    if lead is None:
        raise LookupError(f"no {crm} lead {crm_id} is known to the sidecar (check the id, or wait for the next poll)")
    lines = [f"lead {lead.name} ({crm} {crm_id}): state {lead.state}, market {lead.market or '-'}, source "
             f"{lead.source or '-'}, intent {lead.intent or '-'}, owner {_rep(session, lead.owner_id)}"]
    clock_rows = list(session.scalars(select(Clock).where(Clock.lead_id == lead.id).order_by(Clock.id)))
    if not clock_rows:
        lines.append("no clock: no window rule matched this lead's state, or it was never in a watched state")
    for clock in clock_rows:
        lines += _clock_lines(session, book, clock, lead, now)
    others = [row for row in session.scalars(select(AuditRow).where(AuditRow.lead_id == lead.id)
                                             .order_by(AuditRow.id))
              if keys.parse_step_key(row.step_key or "") is None and not (row.step_key or "").endswith(":ignored")]
    for row in others:
        lines.append(f"decision {row.at:%Y-%m-%d %H:%M} UTC: {row.kind} by {row.actor}"
                     + (f", rule {row.rule_id}" if row.rule_id else "")
                     + (f" (policy {row.policy_version})" if row.policy_version else "")
                     + (f", owner → {_rep(session, row.to_owner)}" if row.to_owner else ""))
        lines += [_effect_line(effect) for effect in session.scalars(
            select(OutboxRow).where(OutboxRow.audit_id == row.id).order_by(OutboxRow.id))]
    return lines
