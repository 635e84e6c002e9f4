"""What every `sidecar` subcommand shares: consoles, the policy loader, the store, the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from sidecar.policy import Policy, PolicyError, load_policy
from sidecar.settings import Settings
from sidecar.store.db import make_engine, migrate, session_factory

console = Console()
errors = Console(stderr=True)

EXAMPLES = Path(__file__).resolve().parent.parent / "config"
PolicyOption = Annotated[Path | None, typer.Option("--policy", help="Policy YAML (default: settings).")]


def now() -> datetime:
    """The command line is the one layer that reads the wall clock; everything below gets it passed."""
    return datetime.now(UTC)  # the CLI's clock


def load_or_exit(path: Path) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            errors.print(str(problem), markup=False, highlight=False)
        errors.print(f"[red]{len(exc.problems)} problem(s) in {path}[/red]")
        raise typer.Exit(1) from exc


def sessions() -> sessionmaker[Session]:
    engine = make_engine(Settings().database_url)
    migrate(engine)
    return session_factory(engine)
