"""`sidecar directory`: teams, reps, capacity and PTO."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sidecar import audit
from sidecar.cli_common import console, errors, fail, now, parse_day, sessions
from sidecar.settings import Settings
from sidecar.store.db import transaction

directory_app = typer.Typer(help="The sales directory: teams, reps, capacity, PTO.", no_args_is_help=True,
                            rich_markup_mode=None)


@directory_app.command("apply")
def directory_apply(
    file: Annotated[Path | None, typer.Option("--file", help="Directory YAML (default: settings).")] = None,
    replace_pto: Annotated[bool, typer.Option(
        "--replace-pto", help="Drop PTO the file does not list (e.g. entered with `directory pto`).")] = False,
) -> None:
    """Load config/directory.yaml into the store.

    Every problem is reported at once, with its line; the applied directory is versioned and audited.

    PTO entered with `sidecar directory pto` is kept: the apply is refused, naming each range, until
    the file lists it too (or --replace-pto drops it)."""
    from sidecar.directory import DirectoryError, apply_directory, read_directory
    from sidecar.engine.policies import PolicyBook

    path = file or Settings().directory_file
    try:
        directory, lines = read_directory(path)
        with transaction(sessions()) as session:
            _version, policy = PolicyBook().active(session)
            at = now()
            try:
                version = apply_directory(session, directory, policy, now=at, replace_pto=replace_pto)
            except DirectoryError as exc:
                raise exc.located(lines) from exc
            audit.record(session, at=at, kind="directory_applied", actor="cli",
                         details={"version": version, "file": str(path)})
    except DirectoryError as exc:
        for line in str(exc).splitlines():
            errors.print(line, markup=False, highlight=False)
        raise fail(f"{len(exc.problems)} problem(s) in {path}; nothing was applied") from exc
    except LookupError as exc:  # no active policy yet
        raise fail(f"{exc} (run `sidecar init` or `sidecar policy apply` first)") from exc
    console.print(f"directory {version} applied: {len(directory.teams)} teams, {len(directory.reps)} reps "
                  "(the next CRM user sync re-applies deactivations)")


@directory_app.command("show")
def directory_show(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per rep, for scripts.")] = False,
) -> None:
    """Every rep and whether routing could pick them now.

    With team, role, capacity and open leads; ids are never shortened."""
    from sidecar.directory import show_directory
    from sidecar.engine.policies import PolicyBook

    with transaction(sessions()) as session:
        book = PolicyBook()
        version, policy = book.active(session)
        rows = show_directory(session, book, version, policy, now())
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
        return
    if not rows:
        console.print("the directory is empty: run `sidecar directory apply` (teams and reps from "
                      "config/directory.yaml); `sidecar run` also adds CRM users as they sync")
        return
    table = Table(title="directory")
    for column in ("rep", "name", "crm", "team", "role", "capacity", "open leads", "available now"):
        # ids are what an admin copies into `directory pto` or the file: fold, never cut with "…"
        table.add_column(column, overflow="fold", min_width=max(len(str(r["rep"])) for r in rows)
                         if column == "rep" else None)
    for row in rows:
        table.add_row(row["rep"], row["name"], row["crm"], row["team"] or "-", row["role"], str(row["capacity"]),
                      str(row["open_leads"]), "yes" if row["available"] else f"no: {row['why_not']}")
    console.print(table)


@directory_app.command("pto")
def directory_pto(
    rep: Annotated[str, typer.Argument(help="The rep's CRM user id (see `sidecar directory show`).")],
    start: Annotated[date, typer.Argument(help="First day away, YYYY-MM-DD.", parser=parse_day, metavar="START")],
    end: Annotated[date, typer.Argument(help="Last day away, YYYY-MM-DD (inclusive).", parser=parse_day,
                                        metavar="END")],
) -> None:
    """Record PTO: routing never picks the rep on those days.

    Whole days in the rep's team's time zone.

    Add the same range to the rep's `pto` in config/directory.yaml too: `directory apply` refuses to
    erase PTO the file does not list."""
    from sidecar.directory import add_pto
    from sidecar.engine.policies import PolicyBook
    from sidecar.store.models import Rep, Team

    if end < start:
        raise fail(f"the last day away ({end}) is before the first ({start}): give START then END, "
                   "both YYYY-MM-DD and inclusive")
    with transaction(sessions()) as session:
        row = session.get(Rep, rep)
        if row is None:
            raise fail(f"no rep {rep}: run `sidecar directory show` for the ids (or `sidecar directory apply`)")
        team = session.get(Team, row.team_id) if row.team_id else None
        _version, policy = PolicyBook().active(session)
        tz = policy.markets[team.market].tz if team and team.market in policy.markets else "UTC"
        add_pto(session, rep, start, end, tz)
        audit.record(session, at=now(), kind="pto_recorded", actor="cli",
                     details={"rep": rep, "from": start.isoformat(), "to": end.isoformat(), "tz": tz})
    console.print(f"{row.name} is away {start}..{end} ({tz})")
