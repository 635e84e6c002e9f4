"""`sidecar policy`: show, compare and apply escalation policy versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from sidecar import audit
from sidecar.cli_common import PolicyOption, console, fail, load_or_exit, now, sessions
from sidecar.cli_policy_test import policy_test
from sidecar.policy import Policy
from sidecar.policy.diff import RuleChange, diff_policies
from sidecar.policy.rules import rule_lines
from sidecar.policy.version import (
    UnknownVersion,
    active_version,
    find_version,
    policy_of,
    record_version,
    running_clocks,
    version_of,
)
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


def _resolve(ref: str) -> tuple[Policy, str, str]:
    """A policy file path or a recorded version (a short hash will do): the policy, how to name it,
    and the file it came from."""
    if Path(ref).exists():
        loaded = load_or_exit(Path(ref))
        return loaded, f"{ref} ({version_of(loaded)})", ref
    with transaction(sessions()) as session:
        try:
            row = find_version(session, ref)
        except UnknownVersion as exc:
            raise fail(f"{ref!r} is not a file, and {exc}", 2) from exc
        return policy_of(row), f"version {row.version} {row.label!r}", row.source_file


def _print_changes(changes: list[RuleChange], title: str) -> None:
    if not changes:
        console.print("no changes: same rules, same behaviour")
        return
    console.print(title, markup=False, highlight=False)  # a line of its own: a table title would wrap
    table = Table()
    for column in ("rule or section", "change", "what changes"):
        table.add_column(column)
    for change in changes:
        table.add_row(change.id, change.change, change.detail)
    console.print(table)


@policy_app.command("diff")
def policy_diff(
    old: Annotated[str, typer.Argument(help="The older policy: a YAML file or a recorded version (short hash).")],
    new: Annotated[str, typer.Argument(help="The newer policy: a YAML file or a recorded version (short hash).")],
) -> None:
    """Say what changed between two policy files or versions.

    Every section: rules by id, states map, pause states, progress, noise, assignment, labels..."""
    (before, old_name, _), (after, new_name, _) = _resolve(old), _resolve(new)
    _print_changes(diff_policies(before, after), f"{old_name} -> {new_name}")


@policy_app.command("history")
def policy_history() -> None:
    """List the recorded policy versions, the active one first.

    With their label, file, when each was last made active and the clocks still running on it."""
    with transaction(sessions()) as session:
        rows = list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.activated_at.desc())))
        clocks = running_clocks(session)
    if not rows:
        console.print("no policy recorded yet: run `sidecar init` or `sidecar policy apply`")
        return
    table = Table(title="policy versions (any unambiguous start of a version works where one is asked for)")
    for column in ("version", "label", "last activated (UTC)", "file", "running clocks", ""):
        table.add_column(column)
    for i, row in enumerate(rows):
        table.add_row(row.version, row.label, f"{row.activated_at:%Y-%m-%d %H:%M}", row.source_file,
                      str(clocks.get(row.version, 0)), "active" if i == 0 else "")
    console.print(table)


def _interactive() -> bool:
    return sys.stdin.isatty()


@policy_app.command("apply")
def policy_apply(
    ref: Annotated[str | None, typer.Argument(
        help="A policy file or a recorded version (short hash) to go back to; default: --policy or settings.",
        show_default=False)] = None,
    policy: PolicyOption = None,
    recompute: Annotated[bool, typer.Option("--recompute", help="Also move running clocks onto this version.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking (for scripts).")] = False,
) -> None:
    """Make a policy file (or a recorded version) the active one.

    Shows what changes and how many running clocks stay on their old version, then asks
    (--yes for scripts). Running clocks keep their version unless --recompute moves them (audited)."""
    from sidecar.engine.clocks import recompute as recompute_clocks
    from sidecar.engine.policies import PolicyBook

    settings = Settings()
    if ref is not None and policy is not None:
        raise fail("give the policy either as an argument or with --policy, not both", 2)
    target = ref or str(policy or settings.policy_file)
    loaded, name, source = _resolve(target)
    version = version_of(loaded)
    store = sessions()
    with transaction(store) as session:
        current = active_version(session)
        if current is not None and current.version == version:
            console.print(f"policy {version} {loaded.label!r} is already active; nothing to apply")
            return
        clocks = {v: n for v, n in running_clocks(session).items() if v != version}
    if current is not None:
        _print_changes(diff_policies(policy_of(current), loaded), f"active {current.version} -> {name}")
    else:
        console.print(f"no active policy yet; {name} becomes the first")
    staying = sum(clocks.values())
    per_version = ", ".join(f"{n} on {v}" for v, n in sorted(clocks.items()))
    if recompute:
        console.print(f"--recompute: {staying} running clocks move onto {version}" if staying else
                      "--recompute: no running clocks to move")
    else:
        console.print(f"{staying} running clocks stay on their old version" + (f" ({per_version})" if staying else "")
                      + "; new clocks start on " + version)
    if not yes:
        if not _interactive():
            raise fail("policy apply asks before applying and there is no terminal to ask on: pass --yes")
        if not typer.confirm(f"apply {version}?", default=False):
            raise fail("not applied")
    at = now()
    with transaction(store) as session:
        row = record_version(session, loaded, source, at)
        moved = recompute_clocks(session, PolicyBook(), at) if recompute else 0
        if recompute:
            audit.record(session, at=at, kind="policy_recomputed", policy_version=row.version, actor="admin",
                         details={"clocks_moved": moved})
    console.print(f"active policy {row.version} {row.label!r}" + (f"; {moved} running clocks moved" if recompute
                                                                   else ""))

policy_app.command("test")(policy_test)
