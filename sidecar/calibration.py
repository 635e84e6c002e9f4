"""`sidecar calibrate --quarter 2026Q4`: the quarterly review of seed 001 step 7, with its numbers.

Three questions, each judged against `calibration` in the policy:
* breach rate per (market, source), leads that arrived in the quarter: above the threshold, the
  window is too tight for that market and source, or the team is understaffed;
* auto-reassignments per team: above the threshold, the original assignment (routing) is wrong,
  not the escalation rule;
* warnings ignored per warning rule: above the threshold, the warning is noise.

Breaches are the typed breach step (first ladder step at or past 100 %), reassignments the typed
action, ignored warnings the SLA pattern's `:ignored` rows (written at the breach for every earlier
warning of the clock): never the admin's `kind` labels.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sidecar.audit import Pattern, StepAction
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import Calibration
from sidecar.reports import breaches
from sidecar.store.models import AuditRow, Lead, Rep, Team

_QUARTER = re.compile(r"^(\d{4})\s*-?\s*Q([1-4])$", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    question: str  # breach_rate | reassignments | ignored_warnings
    subject: str  # "US-East / paid_social", "team US East", "rule sla.imminent"
    count: int  # breached leads, reassigned leads, ignored warnings
    total: int  # leads, leads, warnings sent
    threshold: float
    flagged: bool
    advice: str  # what to do when flagged

    @property
    def rate(self) -> float:
        return self.count / self.total if self.total else 0.0

    def numbers(self) -> str:
        what = {"breach_rate": "leads breached", "reassignments": "leads auto-reassigned",
                "ignored_warnings": "warnings ignored"}[self.question]
        return f"{self.count} of {self.total} {what} ({self.rate:.0%}; threshold {self.threshold:.0%})"


def quarter_bounds(text: str) -> tuple[datetime, datetime]:
    match = _QUARTER.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a quarter; write it like 2026Q4")
    year, quarter = int(match.group(1)), int(match.group(2))
    start = datetime(year, 3 * quarter - 2, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if quarter == 4 else datetime(year, 3 * quarter + 1, 1, tzinfo=UTC)
    return start, end


def _judge(question: str, subject: str, count: int, total: int, limit: float, rules: Calibration,
           advice: str) -> Finding:
    flagged = total >= rules.min_count and count / total > limit if total else False
    return Finding(question, subject, count, total, limit, flagged, advice)


def _breach_rates(session: Session, book: PolicyBook, rules: Calibration, start: datetime,
                  end: datetime) -> list[Finding]:
    leads = list(session.scalars(select(Lead).where(Lead.created_at >= start, Lead.created_at < end)))
    breached = {lead.id for _, lead in breaches(session, book, start, end)}
    total = Counter((lead.market or "unknown", lead.source or "unknown") for lead in leads)
    late = Counter((lead.market or "unknown", lead.source or "unknown") for lead in leads if lead.id in breached)
    return [_judge("breach_rate", f"{market} / {source}", late[(market, source)], n, rules.max_breach_rate, rules,
                   "widen the window or staff up") for (market, source), n in sorted(total.items())]


def _reassignments(session: Session, rules: Calibration, start: datetime, end: datetime) -> list[Finding]:
    teams = {str(i): str(n) for i, n in session.execute(select(Team.id, Team.name))}
    rep_team = {str(i): t for i, t in session.execute(select(Rep.id, Rep.team_id))}
    leads = Counter(team for team in session.scalars(select(Lead.team_id).where(
        Lead.created_at >= start, Lead.created_at < end)))
    moved: dict[str, set[int]] = {}
    for row in session.scalars(select(AuditRow).where(AuditRow.at >= start, AuditRow.at < end,
                                                      AuditRow.action == StepAction.REASSIGN.value)):
        lead = session.get(Lead, row.lead_id) if row.lead_id is not None else None
        team = rep_team.get(row.owner_id or "") or (lead.team_id if lead else None)  # the team it was taken from
        if team is not None and row.lead_id is not None:
            moved.setdefault(team, set()).add(row.lead_id)
    return [_judge("reassignments", f"team {teams.get(team, team)}", len(moved.get(team, set())), leads[team],
                   rules.max_reassign_rate, rules, "routing problem: tune the assignment rule, not the escalation")
            for team in sorted(t for t in leads.keys() | moved.keys() if t)]


def _ignored(session: Session, rules: Calibration, start: datetime, end: datetime) -> list[Finding]:
    rows = list(session.scalars(select(AuditRow).where(
        AuditRow.at >= start, AuditRow.at < end, AuditRow.pattern == Pattern.SLA.value)))
    sent = Counter(row.rule_id for row in rows if row.action == StepAction.NOTIFY.value)
    ignored = Counter(row.rule_id for row in rows
                      if row.action is None and (row.step_key or "").endswith(":ignored"))
    return [_judge("ignored_warnings", f"rule {rule}", ignored[rule], sent[rule], rules.max_ignored_rate, rules,
                   "noise: tighten the channel, add context or warn less often")
            for rule in sorted(r for r in ignored if r)]


def calibrate(session: Session, book: PolicyBook, rules: Calibration, start: datetime,
              end: datetime) -> list[Finding]:
    """Every figure of the quarter, flagged ones first within each question."""
    findings = _breach_rates(session, book, rules, start, end) + _reassignments(session, rules, start, end) \
        + _ignored(session, rules, start, end)
    order = {"breach_rate": 0, "reassignments": 1, "ignored_warnings": 2}
    return sorted(findings, key=lambda f: (order[f.question], not f.flagged, -f.rate, f.subject))
