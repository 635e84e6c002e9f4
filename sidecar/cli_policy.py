"""`sidecar policy`: show, compare and apply escalation policy versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sidecar import audit
from sidecar.cli_common import PolicyOption, console, fail, load_or_exit, now
from sidecar.cli_policy_test import policy_test
from sidecar.policy import Policy
from sidecar.policy.rules import diff_policies, rule_lines
from sidecar.policy.version import active_version, policy_of, record_version, version_of
from sidecar.settings import Settings
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import PolicyVersion

policy_app = typer.Typer(help="Show, compare and apply escalation policy versions.", no_args_is_help=True,
                         rich_markup_mode=None)


@policy_app.command("show")
def policy_show(policy: PolicyOption = None) -> None:
    """Print the active policy version and its rules.

    Every rule with its one-line purpose."""
    if policy is not None:
        loaded, version = load_or_exit(policy), None
    else:
        settings = Settings()
        engine = make_engine(settings.database_url)
        migrate(engine)
        with transaction(session_factory(engine)) as session:
            row = active_version(session)
            version = row.version if row else None
            loaded = policy_of(row) if row else load_or_exit(settings.policy_file)
    table = Table(title=f"policy {version or version_of(loaded)} {loaded.label!r}")
    for column in ("rule", "section", "what it does"):
        table.add_column(column)
    for line in rule_lines(loaded):
        table.add_row(line.id, line.section, line.purpose)
    console.print(table)


def _resolve(ref: str) -> Policy:
    """A policy file path or a recorded version hash."""
    if Path(ref).exists():
        return load_or_exit(Path(ref))
    engine = make_engine(Settings().database_url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        row = session.get(PolicyVersion, ref)
        if row is None:
            raise fail(f"{ref!r} is neither a file nor a recorded policy version (see `sidecar policy show`)", 2)
        return policy_of(row)


@policy_app.command("diff")
def policy_diff(
    old: Annotated[str, typer.Argument(help="The older policy: a YAML file or a recorded version hash.")],
    new: Annotated[str, typer.Argument(help="The newer policy: a YAML file or a recorded version hash.")],
) -> None:
    """Show rule-level changes between two policy files or versions."""
    changes = diff_policies(_resolve(old), _resolve(new))
    if not changes:
        console.print("no rule changes")
        return
    table = Table(title=f"{old} -> {new}")
    for column in ("rule", "change", "detail"):
        table.add_column(column)
    for change in changes:
        table.add_row(change.id, change.change, change.detail)
    console.print(table)


@policy_app.command("apply")
def policy_apply(
    policy: PolicyOption = None,
    recompute: Annotated[bool, typer.Option("--recompute", help="Also move running clocks onto this version.")] = False,
) -> None:
    """Make the policy file the active version.

    Unchanged content keeps its version.

    Running clocks keep the version they started under unless --recompute moves them (audited)."""
    from sidecar.engine.clocks import recompute as recompute_clocks
    from sidecar.engine.policies import PolicyBook

    settings = Settings()
    path = policy or settings.policy_file
    loaded = load_or_exit(path)
    engine = make_engine(settings.database_url)
    migrate(engine)
    at = now()
    with transaction(session_factory(engine)) as session:
        row = record_version(session, loaded, str(path), at)
        moved = recompute_clocks(session, PolicyBook(), at) if recompute else 0
        if recompute:
            audit.record(session, at=at, kind="policy_recomputed", policy_version=row.version, actor="admin",
                         details={"clocks_moved": moved})
    console.print(f"active policy {row.version} {row.label!r}" + (f"; {moved} running clocks moved" if recompute
                                                                   else ""))


policy_app.command("test")(policy_test)
