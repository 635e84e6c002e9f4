"""`sidecar outcomes`: per-lead outcome rows (first response, escalations, how the lead ended)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sidecar import outcomes
from sidecar.cli_common import DAY, console, fail, now, parse_since, sessions
from sidecar.engine.policies import PolicyBook
from sidecar.store.db import transaction

outcomes_app = typer.Typer(help="Per-lead outcomes: SLA hit rate, escalations, results.", no_args_is_help=True,
                           rich_markup_mode=None)
Since = Annotated[datetime | None, typer.Option(
    "--since", help="Only leads that arrived from this day on, YYYY-MM-DD (UTC), or a time like "
                    "2026-11-01T09:00:00+00:00.", parser=parse_since, metavar=DAY)]


@outcomes_app.command("export")
def outcomes_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    since: Since = None,
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")] = None,
) -> None:
    """Rebuild the outcome rows from the audit and lead history, then write them as CSV or JSON."""
    if fmt not in ("csv", "json"):
        raise fail(f"--format must be csv or json, not {fmt!r} (see `sidecar outcomes export --help`)", 2)
    try:
        with transaction(sessions()) as session:
            outcomes.refresh(session, PolicyBook(), now(), since)
            text = "".join(outcomes.export(session, fmt, since))
    except LookupError as exc:  # no policy recorded yet
        raise fail(str(exc)) from exc
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@outcomes_app.command("rates")
def outcomes_rates(
    by: Annotated[str, typer.Option("--by", help=f"Comma-separated: {', '.join(outcomes.GROUPS)}.")] = "market",
    since: Since = None,
) -> None:
    """SLA hit rate (first window closed without a breach) per group."""
    groups = [name.strip() for name in by.split(",") if name.strip()]
    try:
        with transaction(sessions()) as session:
            outcomes.refresh(session, PolicyBook(), now(), since)
            rates = outcomes.hit_rates(session, groups)
    except (LookupError, ValueError) as exc:
        raise fail(str(exc)) from exc
    table = Table(title="SLA hit rate (first-response window)")
    for column in (*groups, "met", "decided", "rate"):
        table.add_column(column)
    for values, met, decided in rates:
        table.add_row(*(str(v) for v in values), str(met), str(decided), f"{met / decided:.0%}")
    console.print(table)
