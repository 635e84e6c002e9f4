"""`sidecar calibrate --quarter 2026Q4`: what the quarterly review should change, with the numbers."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sidecar.calibration import Finding, calibrate, quarter_bounds
from sidecar.cli_common import PolicyOption, console, fail, load_or_exit, sessions
from sidecar.engine.policies import PolicyBook
from sidecar.report_formats import STYLE
from sidecar.settings import Settings
from sidecar.store.db import transaction

QUESTIONS = {"breach_rate": "Breach rate per market and source",
             "reassignments": "Auto-reassignments per team",
             "ignored_warnings": "Warnings ignored per rule"}


def calibrate_command(
    quarter: Annotated[str, typer.Option("--quarter", help="The quarter to review, like 2026Q4 (UTC).")],
    policy: PolicyOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table or html")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="File to write the HTML to (default: stdout).")] = None,
) -> None:
    """Quarterly calibration: what to retune, with numbers.

    Each (market, source), team and warning rule with its numbers, flagged above the thresholds
    in the policy's `calibration` section, with what to change."""
    if fmt not in ("table", "html"):
        raise fail("--format must be table or html", 2)
    try:
        start, end = quarter_bounds(quarter)
    except ValueError as exc:
        raise fail(f"--quarter: {exc}", 2) from exc
    rules = load_or_exit(policy or Settings().policy_file).calibration
    with transaction(sessions()) as session:
        findings = calibrate(session, PolicyBook(), rules, start, end)
    if fmt == "html":
        page = as_html(quarter, findings)
        if out is None:
            typer.echo(page, nl=False)
        else:
            out.write_text(page, encoding="utf-8")
            console.print(f"wrote {out}")
        return
    flagged = sum(f.flagged for f in findings)
    console.print(f"calibration {quarter.upper()}: {flagged} finding(s) to act on", markup=False, highlight=False)
    for question, title in QUESTIONS.items():
        rows = [f for f in findings if f.question == question]
        console.print(f"\n{title}:", markup=False, highlight=False)
        if not rows:
            console.print("  nothing recorded in this quarter")
            continue
        table = Table()
        for column in ("", "what", "numbers", "what to do"):
            table.add_column(column)
        for finding in rows:
            table.add_row("FLAG" if finding.flagged else "ok", finding.subject, finding.numbers(),
                          finding.advice if finding.flagged else "-")
        console.print(table)


def as_html(quarter: str, findings: list[Finding]) -> str:
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>Calibration {escape(quarter)}</title>"
             f"<style>{STYLE}</style><h1>Calibration {escape(quarter.upper())}</h1>"]
    for question, title in QUESTIONS.items():
        rows = [f for f in findings if f.question == question]
        parts.append(f"<h2>{escape(title)}</h2>")
        if not rows:
            parts.append("<p>nothing recorded in this quarter</p>")
            continue
        parts.append("<table><tr><th></th><th>what</th><th>numbers</th><th>what to do</th></tr>")
        parts.extend(f"<tr><td>{'FLAG' if f.flagged else 'ok'}</td><td>{escape(f.subject)}</td>"
                     f"<td>{escape(f.numbers())}</td><td>{escape(f.advice) if f.flagged else '-'}</td></tr>"
                     for f in rows)
        parts.append("</table>")
    return "".join(parts) + "</html>\n"
