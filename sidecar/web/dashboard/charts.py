"""The numbers behind the charts page: breaches over time, response time against the window, hit rate by
team, and response speed against qualification and booking (the same figures as `sidecar report`)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar import reports
from sidecar.engine.clocks import SLA
from sidecar.engine.policies import PolicyBook
from sidecar.store.models import Clock
from sidecar.web.dashboard import svg
from sidecar.web.dashboard.ladder import ladders
from sidecar.web.dashboard.people import team_rows
from sidecar.web.dashboard.queries import breach_rows

# A clock stopped by progress or by the lead moving on (e.g. to CONTACTED) was answered.
ANSWERED = ("progress", "state_left")
# Share of the window used when the clock stopped (progress); the last two are past the deadline.
BUCKETS = (("≤50%", 0.5), ("50–80%", 0.8), ("80–100%", 1.0), ("100–150%", 1.5), (">150%", float("inf")))


def breaches_over_time(session: Session, book: PolicyBook, now: datetime, by: str, days: int = 14) -> Markup:
    """Breaches per UTC day of the last `days` days, stacked by the lead's market or source."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    labels = [(start + timedelta(days=i)).strftime("%d %b") for i in range(days)]
    series: dict[str, list[int]] = {}
    for row, lead in breach_rows(session, ladders(session, book), start):
        key = (lead.market if by == "market" else lead.source) or "unknown"
        series.setdefault(key, [0] * days)[(row.at - start).days] += 1
    return svg.stacked_bars(f"Breaches per day by {by} (UTC days)", labels, dict(sorted(series.items())))


def response_distribution(session: Session, book: PolicyBook) -> tuple[Markup, Counter[str]]:
    """How much of its window each answered clock used (business time), bucketed."""
    counts: Counter[str] = Counter()
    for clock in session.scalars(select(Clock).where(Clock.kind == SLA, Clock.close_reason.in_(ANSWERED))):
        if clock.closed_at is None or clock.window_s <= 0:
            continue
        calendar = book.calendar(clock.policy_version, book.get(session, clock.policy_version), clock.market)
        # Pauses are not subtracted: an answered clock rarely paused, and it only errs late.
        share = calendar.elapsed(clock.started_at, clock.closed_at).total_seconds() / clock.window_s
        counts[next(label for label, upper in BUCKETS if share <= upper)] += 1
    labels = [label for label, _ in BUCKETS]
    colors = [svg.GOOD, svg.GOOD, svg.WARN, svg.BAD, svg.BAD]
    series = {label: [counts[label] if i == j else 0 for j in range(len(labels))] for i, label in enumerate(labels)}
    chart = svg.stacked_bars("Response time against the SLA window (answered clocks)", labels, series,
                             colors=dict(zip(labels, colors, strict=True)), legend=False)
    return chart, counts


def hit_rate_by_team(session: Session, book: PolicyBook, now: datetime) -> Markup:
    rows = [(team.name, team.tally.rate, f"{team.tally.on_time} on time, {team.tally.breached} breached")
            for team in team_rows(session, book, now)]
    return svg.hbars("SLA hit rate by team", rows)


def speed_vs_outcome(session: Session, now: datetime, days: int = 90) -> Markup:
    """Qualified and booked share of the leads of the last `days` days, by how fast they got a first response."""
    section = reports.speed_vs_outcome(session, now - timedelta(days=days), now)
    rows: list[tuple[str, float | None, str]] = []
    for speed, leads, qualified, _, booked, _ in section.rows:
        if leads:
            rows += [(f"{speed}: qualified", qualified / leads, f"{qualified} of {leads} leads"),
                     (f"{speed}: booked", booked / leads, f"{booked} of {leads} leads")]
    return svg.hbars(f"Response speed vs qualification and booking (leads of the last {days} days)", rows,
                     color=svg.NEUTRAL)
