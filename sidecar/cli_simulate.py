"""`sidecar simulate --policy candidate.yaml [--from --to]`: what a candidate policy would have done.

Replays the recorded period on virtual time (`sidecar.simulate`; no CRM, no Slack) and shows it
beside what the active policy did (the recorded audit): warnings, breaches, reassignments and
notifications per persona, by market, source and team, then the leads whose outcome changes.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select

from sidecar.cli_common import DAY, console, fail, load_or_exit, parse_since, sessions, write_or_print
from sidecar.policy.version import version_of
from sidecar.report_formats import STYLE
from sidecar.simulate import EmptyPeriod, Run, recorded_policy, recorded_span, simulate
from sidecar.simulate_compare import GROUPS, MEASURES, Account, account, changed_leads, mismatches, outcome_words
from sidecar.store.db import transaction
from sidecar.store.models import Lead

FORMATS = ("table", "json", "html")


@dataclass(frozen=True)
class Section:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class Comparison:
    headline: list[str]
    sections: list[Section]


def _when(text: str | None) -> datetime | None:
    return parse_since(text) if text else None


def simulate_command(
    policy: Annotated[Path, typer.Option("--policy", help="The candidate policy YAML to try.")],
    since: Annotated[str | None, typer.Option("--from", help=f"Leads arriving from ({DAY} or ISO time, UTC); "
                                                             "default: the first recorded.")] = None,
    until: Annotated[str | None, typer.Option("--to", help=f"Until ({DAY} or ISO time); default: the end of "
                                                           "the recording.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or html")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="File to write json/html to (default: stdout).")] = None,
) -> None:
    """What-if: replay the recorded period against a candidate policy.

    On virtual time, touching no CRM and no Slack: people's recorded actions replay as they
    happened, the engine decides under the candidate policy. Shown beside what the active policy
    did: warnings, breaches, reassignments, notifications per persona, by market/source/team, and
    the leads whose outcome changes. Replayed: the leads that arrived, changed or were
    escalated in the period (from their arrival on); counted: what was decided in the period."""
    if fmt not in FORMATS:
        raise fail("--format must be table, json or html", 2)
    if not policy.is_file():
        raise fail(f"{policy}: no such policy file (copy config/policy.example.yaml and edit it)")
    candidate = load_or_exit(policy)
    recorded = sessions()
    with transaction(recorded) as session:
        try:
            was = recorded_policy(session)
        except LookupError as exc:
            raise fail("nothing recorded to replay: no policy was ever active in this database "
                       "(run `sidecar init` and `sidecar run`, or `sidecar demo`)") from exc
        span = recorded_span(session)
    if span is None:
        raise fail("nothing recorded to replay: no lead has arrived in this database yet")
    start, end = _when(since) or span[0], _when(until) or span[1]
    if end <= start:
        raise fail(f"--to ({end:%Y-%m-%d %H:%M}) must be after --from ({start:%Y-%m-%d %H:%M})", 2)
    with tempfile.TemporaryDirectory(prefix="sidecar-simulate-") as workdir:
        try:
            run = simulate(recorded, candidate, str(policy), start, end, Path(workdir))
        except EmptyPeriod as exc:
            raise fail(f"{exc}; widen --from/--to") from exc
        comparison = compare(recorded, run, was.version, f"{was.version} {was.policy.label!r}",
                             f"{version_of(candidate)} {candidate.label!r} from {policy}")
        run.sessions.kw["bind"].dispose()
    _emit(comparison, fmt, out)


def compare(recorded: Any, run: Run, active_version: str, active: str, candidate: str) -> Comparison:
    with transaction(run.sessions) as session:
        keys = {(lead.crm, lead.crm_id) for lead in session.scalars(select(Lead))}
        after = account(session, keys, run.start, run.end)
    with transaction(recorded) as session:
        before = account(session, keys, run.start, run.end)
    headline = [f"simulate: candidate policy {candidate}", f"against the active policy {active} (recorded)",
                f"period {run.start:%Y-%m-%d %H:%M} to {run.end:%Y-%m-%d %H:%M} UTC: {run.leads} lead(s) replayed, "
                f"{run.changes} recorded change(s) by people, {run.decisions} signal(s) and compliance decision(s)"
                + (f" ({run.skipped} with no place under the candidate policy)" if run.skipped else "")
                + f"; {run.echoes} change(s) the sidecar itself wrote left out (the simulation makes its own); "
                "no CRM or Slack was called"]
    if run.policy_version == active_version:
        differing = len(mismatches(before, after))
        headline.append(f"replay check (same policy as recorded): {len(keys) - differing} of {len(keys)} lead(s) "
                        "escalated exactly as recorded" + ("" if not differing else
                                                           f"; {differing} differ (see the timing list)"))
    return Comparison(headline, sections(before, after))


def sections(before: Account, after: Account) -> list[Section]:
    totals = [(what, before.total(what), after.total(what), after.total(what) - before.total(what))
              for what in MEASURES]
    for persona in sorted(set(before.notifications) | set(after.notifications)):
        a, b = before.notifications[persona], after.notifications[persona]
        totals.append((f"notifications to {persona}", a, b, b - a))
    out = [Section("Totals", ("what", "active", "candidate", "change"), totals)]
    for group in GROUPS:
        values = sorted({*(getattr(lead, group) for lead in before.leads.values()),
                         *(getattr(lead, group) for lead in after.leads.values())})
        rows = [(value, *(n for what in MEASURES
                          for n in (before.by(group, what)[value], after.by(group, what)[value])))
                for value in values]
        rows = [row for row in rows if any(row[1:])]
        columns = (group, *(f"{what} {side}" for what in MEASURES for side in ("active", "candidate")))
        out.append(Section(f"By {group}", columns, rows))
    names = {**before.rep_names, **after.rep_names}
    changed = changed_leads(before, after)
    out.append(Section("Leads whose outcome changes", ("lead", "crm id", "team", "active", "candidate"),
                       [(c.lead.name, c.lead.key[1], c.lead.team, outcome_words(c.before, names),
                         outcome_words(c.after, names)) for c in changed]))
    moved = {c.lead.key for c in changed}
    timing = []
    for key, (was, now) in sorted(mismatches(before, after).items()):
        if key in moved:
            continue
        lead = after.leads.get(key) or before.leads[key]
        timing.append((lead.name, key[1], lead.team, _steps(was), _steps(now)))
    out.append(Section("Leads escalated at other times (same outcome)", ("lead", "crm id", "team", "active",
                                                                         "candidate"), sorted(timing)))
    return out


def _steps(steps: list[Any]) -> str:
    short = {"warnings": "warning", "breaches": "breach", "reassignments": "reassigned"}
    return ", ".join(f"{short[s.what]} {s.at:%m-%d %H:%M}" for s in steps) or "none"


def _emit(comparison: Comparison, fmt: str, out: Path | None) -> None:
    if fmt == "table":
        for line in comparison.headline:
            console.print(line, markup=False, highlight=False)
        for section in comparison.sections:
            console.print(f"\n{section.title}:", markup=False, highlight=False)
            if not section.rows:
                console.print("  none", markup=False, highlight=False)
                continue
            table = Table()
            for column in section.columns:
                table.add_column(column)
            for row in section.rows:
                table.add_row(*(str(v) for v in row))
            console.print(table)
        return
    text = as_json(comparison) if fmt == "json" else as_html(comparison)
    write_or_print(text, out)


def as_json(comparison: Comparison) -> str:
    return json.dumps({"headline": comparison.headline, "sections": [
        {"title": s.title, "rows": [dict(zip(s.columns, row, strict=True)) for row in s.rows]}
        for s in comparison.sections]}, indent=1, default=str) + "\n"


def as_html(comparison: Comparison) -> str:
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>Policy simulation</title>"
             f"<style>{STYLE}</style><h1>Policy simulation</h1>",
             *(f"<p>{escape(line)}</p>" for line in comparison.headline)]
    for section in comparison.sections:
        parts.append(f"<h2>{escape(section.title)}</h2>")
        if not section.rows:
            parts.append("<p>none</p>")
            continue
        head = "".join(f"<th>{escape(c)}</th>" for c in section.columns)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in section.rows)
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    return "".join(parts) + "</html>\n"
