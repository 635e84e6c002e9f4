"""`sidecar report`: seed 002's management questions for a period, as a table, CSV, JSON or HTML."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sidecar.cli_common import DAY, console, fail, now, parse_since, sessions, write_or_print
from sidecar.engine.policies import PolicyBook
from sidecar.report_formats import as_csv, as_html, as_json
from sidecar.reports import Report, build_report
from sidecar.store.db import transaction

FORMATS = ("table", "csv", "json", "html")


def report(
    start: Annotated[datetime | None, typer.Option(
        "--from", help="First day, YYYY-MM-DD (UTC; default: 7 days before --to).", parser=parse_since,
        metavar=DAY)] = None,
    end: Annotated[datetime | None, typer.Option(
        "--to", help="Day after the last, YYYY-MM-DD (UTC; default: now).", parser=parse_since, metavar=DAY)] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or html")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")] = None,
) -> None:
    """Management report for a period, with names.

    Waiting for first response, overdue leads by owner, missed SLAs by source, slowest categories,
    rules firing most, recovered after escalation, response speed vs qualification and booking."""
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}", 2)
    at = now()
    until = end or at
    since = start or until - timedelta(days=7)
    if since >= until:
        raise fail("--from must be before --to", 2)
    with transaction(sessions()) as session:
        built = build_report(session, PolicyBook(), since, until, at)
    if fmt == "table":
        if out is not None:
            raise fail("--out takes csv, json or html; the table is for the terminal", 2)
        _print(built)
        return
    text = {"csv": as_csv, "json": as_json, "html": as_html}[fmt](built)
    write_or_print(text, out)


def _print(built: Report) -> None:
    console.print(f"report {built.start:%Y-%m-%d %H:%M} to {built.end:%Y-%m-%d %H:%M} UTC", markup=False,
                  highlight=False)
    for section in built.sections:
        console.print(f"\n{section.question}", markup=False, highlight=False)
        if not section.rows:
            console.print("  none")
        else:
            table = Table()
            for column in section.columns:
                table.add_column(column)
            for row in section.rows:
                table.add_row(*(str(value) for value in row))
            console.print(table)
        console.print(f"  ({section.how})", markup=False, highlight=False)
