"""What every `sidecar` subcommand shares: consoles, the policy loader, the store, the wall clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleDimensions
from sqlalchemy.orm import Session, sessionmaker
from typer import core
from typer._click import exceptions as click_errors

from sidecar.cli_errors import explain
from sidecar.policy import Policy, PolicyError, load_policy
from sidecar.settings import Settings
from sidecar.store.db import make_engine, migrate, session_factory


class _Console(Console):
    """A rich console that wraps for a terminal only: piped or redirected output keeps every line
    whole (a problem per line for grep, ids never folded or cut), however narrow the terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        return super().size if self.is_terminal else ConsoleDimensions(10_000, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console()
errors = _Console(stderr=True)

EXAMPLES = Path(__file__).resolve().parent.parent / "config"
PolicyOption = Annotated[Path | None, typer.Option("--policy", help="Policy YAML (default: settings).")]
# Every date the CLI takes is YYYY-MM-DD, shown as such in --help (not as strptime codes).
DAY = "YYYY-MM-DD"


def parse_day(text: str) -> date:
    problem = typer.BadParameter(f"{text!r} is not a date in the form {DAY}")
    if len(text) != len(DAY):  # fromisoformat would also take 20261201 or 2026-W48-2
        raise problem
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise problem from exc


def parse_since(text: str) -> datetime:
    """A day (midnight UTC) or an ISO time with an offset, e.g. 2026-11-01T09:00:00+01:00."""
    if len(text) == len(DAY):
        return datetime.combine(parse_day(text), time(0), tzinfo=UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not {DAY} or a time like 2026-11-01T09:00:00+00:00") from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def write_or_print(text: str, out: Path | None) -> None:
    """A rendered report to stdout, or to `out` with one line saying where it went."""
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line and return the Exit to raise (`raise fail(...)`)."""
    errors.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


class SidecarGroup(core.TyperGroup):
    """The `sidecar` group: every failure below it becomes one line on stderr, never a traceback,
    unless `--debug` was given. Usage mistakes (bad option, bad date) are one line too, exit 2."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click_errors.UsageError as exc:
            raise _usage(exc) from exc

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click_errors.NoArgsIsHelpError):
            raise
        except click_errors.UsageError as exc:
            raise _usage(exc) from exc
        except click_errors.ClickException as exc:
            raise fail(exc.format_message(), exc.exit_code) from exc
        except Exception as exc:
            if ctx.find_root().params.get("debug"):
                raise
            raise fail(explain(exc)) from exc


def _usage(exc: click_errors.UsageError) -> Exception:
    if isinstance(exc, click_errors.NoArgsIsHelpError):
        return exc
    command = exc.ctx.command_path if exc.ctx else "sidecar"
    message = exc.format_message().replace("Value error, ", "")
    return fail(f"{message} (see `{command} --help`)", 2)


def now() -> datetime:
    """The command line is the one layer that reads the wall clock; everything below gets it passed."""
    return datetime.now(UTC)  # the CLI's clock


def load_or_exit(path: Path) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            errors.print(str(problem), markup=False, highlight=False)
        raise fail(f"{len(exc.problems)} problem(s) in {path}; `sidecar check` lists every file's") from exc


def sessions() -> sessionmaker[Session]:
    engine = make_engine(Settings().database_url)
    migrate(engine)
    return session_factory(engine)
