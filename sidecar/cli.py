"""The `sidecar` command. The only layer that reads the wall clock."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.policy import Policy, PolicyError, load_policy
from sidecar.policy.rules import diff_policies, rule_lines
from sidecar.policy.version import active_version, policy_of, record_version, version_of
from sidecar.settings import Settings
from sidecar.status import gather
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import PolicyVersion

app = typer.Typer(help="Lead-SLA sidecar: warns, escalates and reassigns before leads fall through.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
policy_app = typer.Typer(help="Show, compare and apply escalation policy versions.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
audit_app = typer.Typer(help="Read the audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
console = Console()
errors = Console(stderr=True)

EXAMPLES = Path(__file__).resolve().parent.parent / "config"
PolicyOption = Annotated[Path | None, typer.Option("--policy", help="Policy YAML (default: settings).")]


def _now() -> datetime:
    return datetime.now(UTC)


def _load_or_exit(path: Path) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            errors.print(str(problem), markup=False, highlight=False)
        errors.print(f"[red]{len(exc.problems)} problem(s) in {path}[/red]")
        raise typer.Exit(1) from exc


@app.command()
def init(
    hubspot: Annotated[bool, typer.Option("--hubspot", help="Also create the sidecar's HubSpot properties.")] = False,
) -> None:
    """Create the database (run migrations) and copy the example config if missing."""
    settings = Settings()
    if hubspot:
        from sidecar import wiring

        created = wiring.ensure_hubspot_properties(settings)
        console.print(f"HubSpot properties: {', '.join(created) or 'already there'}")
    targets = [("policy", settings.policy_file), ("directory", settings.directory_file),
               ("salesforce.fields", Path("config/salesforce.fields.yaml")),
               ("hubspot.fields", Path("config/hubspot.fields.yaml"))]
    for name, target in targets:
        example = EXAMPLES / f"{name}.example.yaml"
        if not target.exists() and example.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(example, target)
            console.print(f"wrote {target} (from {example.name}); edit it to match your org")
    engine = make_engine(settings.database_url)
    migrate(engine)
    policy = _load_or_exit(settings.policy_file)
    with transaction(session_factory(engine)) as session:
        row = record_version(session, policy, str(settings.policy_file), _now())
    console.print(f"database ready ({engine.url.render_as_string(hide_password=True)}); "
                  f"active policy {row.version} {row.label!r}")


@app.command()
def check(
    policy: PolicyOption = None,
    offline: Annotated[bool, typer.Option("--offline", help="Only the policy; do not call CRMs or Slack.")] = False,
) -> None:
    """Validate the policy, then the configured CRM and Slack credentials, scopes and fields (exit 1 on any problem)."""
    settings = Settings()
    path = policy or settings.policy_file
    loaded = _load_or_exit(path)
    console.print(f"[green]policy OK[/green]: {path} version {version_of(loaded)} "
                  f"{loaded.label!r}, {len(rule_lines(loaded))} rules")
    if offline:
        return
    from sidecar import wiring

    results = wiring.check_connections(settings)
    for system, ok, message in results:
        (console if ok else errors).print(f"{system}: {message}", markup=False, highlight=False)
    if any(not ok for _system, ok, _message in results):
        raise typer.Exit(1)


@policy_app.command("show")
def policy_show(policy: PolicyOption = None) -> None:
    """Print the active policy version and every rule with its one-line purpose."""
    if policy is not None:
        loaded, version = _load_or_exit(policy), None
    else:
        settings = Settings()
        engine = make_engine(settings.database_url)
        migrate(engine)
        with transaction(session_factory(engine)) as session:
            row = active_version(session)
            version = row.version if row else None
            loaded = policy_of(row) if row else _load_or_exit(settings.policy_file)
    table = Table(title=f"policy {version or version_of(loaded)} {loaded.label!r}")
    for column in ("rule", "section", "what it does"):
        table.add_column(column)
    for line in rule_lines(loaded):
        table.add_row(line.id, line.section, line.purpose)
    console.print(table)


def _resolve(ref: str) -> Policy:
    """A policy file path or a recorded version hash."""
    if Path(ref).exists():
        return _load_or_exit(Path(ref))
    engine = make_engine(Settings().database_url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        row = session.get(PolicyVersion, ref)
        if row is None:
            errors.print(f"{ref!r} is neither a file nor a recorded policy version")
            raise typer.Exit(2)
        return policy_of(row)


@policy_app.command("diff")
def policy_diff(old: str, new: str) -> None:
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
    """Record the policy file as the active version (unchanged content keeps its version).

    Running clocks keep the version they started under unless --recompute moves them (audited)."""
    from sidecar.engine.clocks import recompute as recompute_clocks
    from sidecar.engine.policies import PolicyBook

    settings = Settings()
    path = policy or settings.policy_file
    loaded = _load_or_exit(path)
    engine = make_engine(settings.database_url)
    migrate(engine)
    now = _now()
    with transaction(session_factory(engine)) as session:
        row = record_version(session, loaded, str(path), now)
        moved = recompute_clocks(session, PolicyBook(), now) if recompute else 0
        if recompute:
            audit.record(session, at=now, kind="policy_recomputed", policy_version=row.version, actor="admin",
                         details={"clocks_moved": moved})
    console.print(f"active policy {row.version} {row.label!r}" + (f"; {moved} running clocks moved" if recompute
                                                                   else ""))


def _sessions() -> sessionmaker[Session]:
    engine = make_engine(Settings().database_url)
    migrate(engine)
    return session_factory(engine)


@app.command()
def status() -> None:
    """Open clocks, steps due within the hour, outbox backlog and dead effects, last poll per CRM."""
    with transaction(_sessions()) as session:
        report = gather(session, _now())
    console.print(f"clocks: {report.open_clocks} running, {report.paused_clocks} paused, "
                  f"{report.due_next_hour} steps due within the hour")
    console.print("outbox: " + (", ".join(f"{n} {s}" for s, n in sorted(report.outbox.items())) or "empty"))
    for crm, at in sorted(report.last_polls.items()):
        console.print(f"last {crm} poll: {at.isoformat() if at else 'never'}")
    if report.dead:
        table = Table(title="effects that could not be delivered (fix, then they are not retried)")
        for column in ("key", "effect", "what to fix"):
            table.add_column(column)
        for key, action, reason in report.dead:
            table.add_row(key, action, reason)
        console.print(table)


@audit_app.command("export")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    lead: Annotated[str | None, typer.Option("--lead", help="Only this CRM lead id.")] = None,
    since: Annotated[datetime | None, typer.Option("--since", help="ISO time, e.g. 2026-11-01T00:00:00Z.",
                                                   formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"])] = None,
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")] = None,
) -> None:
    """Write the audit log as JSON lines or CSV, oldest first."""
    if fmt not in ("jsonl", "csv"):
        errors.print("--format must be jsonl or csv")
        raise typer.Exit(2)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with transaction(_sessions()) as session:
        lines = audit.export(session, fmt, lead, since)
        if out is None:
            for line in lines:
                typer.echo(line, nl=False)
        else:
            with out.open("w", encoding="utf-8") as handle:
                handle.writelines(lines)


@app.command()
def demo(
    crm: Annotated[str, typer.Option(help="salesforce, hubspot or both")] = "both",
    seed: Annotated[int, typer.Option(help="Same seed, same org, same audit.")] = 1,
    scenario: Annotated[Path | None, typer.Option(help="A scripted day (see config/scenarios/).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy YAML (default: the example policy).")] = None,
    speed: Annotated[str, typer.Option(help="Virtual minutes per real minute, or 'max'.")] = "max",
    duration: Annotated[str, typer.Option(help="Virtual time to run, e.g. 12h, 2d.")] = "1d",
    out: Annotated[Path | None, typer.Option(help="Where to write audit, CRM, Slack and request files.")] = None,
    port: Annotated[int, typer.Option(help="Port of the webhook receivers (0 = any free port).")] = 0,
) -> None:
    """Run the sidecar against emulated Salesforce, HubSpot and Slack on virtual time (no accounts)."""
    from rich.progress import Progress

    from sidecar import wiring

    if crm not in ("salesforce", "hubspot", "both"):
        errors.print("--crm must be salesforce, hubspot or both")
        raise typer.Exit(2)
    try:
        span = wiring.parse_duration(duration)
        rate = None if speed == "max" else float(speed)
    except ValueError as exc:
        errors.print(str(exc))
        raise typer.Exit(2) from exc
    target = out or Path("sidecar-demo")
    target.mkdir(parents=True, exist_ok=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("virtual time", total=span.total_seconds())
        start: list[datetime] = []

        def show(at: datetime, summary: object) -> None:
            start.append(start[0] if start else at)
            kinds = getattr(summary, "kinds", {})
            bar.update(task, completed=(at - start[0]).total_seconds(),
                       description=f"{at:%a %H:%M} UTC  warnings {kinds.get('sla_breach_imminent', 0)}  "
                                   f"breaches {kinds.get('sla_breach', 0)}  "
                                   f"reassigned {kinds.get('sla_breach_auto_reassign', 0)}")

        summary = wiring.run_demo(crm=crm, seed=seed, scenario=scenario, policy=policy, speed=rate, duration=span,
                                  out=target, port=port, progress=show)
    table = Table(title=f"demo: {duration} of virtual time in {summary.seconds:.0f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    effects = summary.effects
    for label, value in (
        ("leads", summary.leads),
        ("warnings to owners (80 %)", summary.kinds.get("sla_breach_imminent", 0)),
        ("breaches to managers (100 %)", summary.kinds.get("sla_breach", 0)),
        ("reassignments (150 %)", summary.kinds.get("sla_breach_auto_reassign", 0)),
        ("CRM tasks written", effects.get("create_task:done", 0)),
        ("CRM breach notes", effects.get("add_note:done", 0)),
        ("CRM owner changes", effects.get("change_owner:done", 0)),
        ("Slack messages", summary.slack_messages),
        ("effects that failed", sum(n for key, n in effects.items() if key.endswith(":dead"))),
    ):
        table.add_row(label, str(value))
    console.print(table)
    console.print(f"files in {target}/: audit.jsonl, crm.json, slack.json, requests.jsonl")


@app.command()
def run() -> None:
    """Run the sidecar: poll, take webhooks, evaluate and dispatch on real time (Ctrl-C/SIGTERM stops)."""
    from sidecar import logs, scheduler, wiring
    from sidecar.web.app import BackgroundServer, create_app

    settings = Settings()
    logs.configure(settings.log_level)
    sessions = _sessions()
    runtime = wiring.build_runtime(settings, sessions)
    if not runtime.readers:
        errors.print("no CRM configured: set Salesforce or HubSpot credentials in .env (see .env.example)")
        raise typer.Exit(1)
    web = BackgroundServer(create_app(sessions, wiring.web_routers(settings, sessions, runtime.ctx)),
                           settings.web_port)
    console.print(f"webhooks on {web.start()}; CRMs: {', '.join(runtime.readers)}")
    try:
        scheduler.run_forever(runtime, _now)
    finally:
        web.stop()


@app.command()
def revert(
    lead: Annotated[str, typer.Argument(help="The CRM id of the lead.")],
    crm: Annotated[str, typer.Option(help="salesforce or hubspot")] = "salesforce",
    reason: Annotated[str, typer.Option(help="Why (kept in the audit).")] = "",
    actor: Annotated[str, typer.Option(help="Who reverts (team lead's user id or name).")] = "admin",
) -> None:
    """Give an automatically reassigned lead back to its original owner (audited, linked)."""
    from sidecar.engine.ladder import EngineContext
    from sidecar.engine.policies import PolicyBook
    from sidecar.engine.revert import RevertError, revert_reassignment
    from sidecar.links import RecordLinks

    try:
        with transaction(_sessions()) as session:
            row = revert_reassignment(session, EngineContext(PolicyBook(), RecordLinks()), crm, lead, actor,
                                      reason, _now())
            console.print(f"reverted: owner goes back to {row.details['to_owner']} (audit #{row.id}); "
                          "the change is written to the CRM by the running sidecar")
    except RevertError as exc:
        errors.print(str(exc))
        raise typer.Exit(1) from exc


directory_app = typer.Typer(help="The sales directory: teams, reps, capacity, PTO.", no_args_is_help=True)
app.add_typer(directory_app, name="directory")


@directory_app.command("apply")
def directory_apply(
    file: Annotated[Path | None, typer.Option("--file", help="Directory YAML (default: settings).")] = None,
) -> None:
    """Load config/directory.yaml into the store (every problem reported at once; versioned, audited)."""
    from sidecar.directory import DirectoryError, apply_directory, load_directory
    from sidecar.engine.policies import PolicyBook

    path = file or Settings().directory_file
    try:
        directory = load_directory(path)
        with transaction(_sessions()) as session:
            _version, policy = PolicyBook().active(session)
            version = apply_directory(session, directory, policy)
            audit.record(session, at=_now(), kind="directory_applied", actor="cli",
                         details={"version": version, "file": str(path)})
    except (DirectoryError, LookupError) as exc:
        errors.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"directory {version} applied: {len(directory.teams)} teams, {len(directory.reps)} reps "
                  "(the next CRM user sync re-applies deactivations)")


@directory_app.command("show")
def directory_show(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per rep, for scripts.")] = False,
) -> None:
    """Every rep with team, role, capacity, open leads and whether routing could pick them now."""
    from sidecar.directory import show_directory
    from sidecar.engine.policies import PolicyBook

    with transaction(_sessions()) as session:
        book = PolicyBook()
        version, policy = book.active(session)
        rows = show_directory(session, book, version, policy, _now())
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
        return
    table = Table(title="directory")
    for column in ("rep", "name", "crm", "team", "role", "capacity", "open leads", "available now"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["rep"], row["name"], row["crm"], row["team"] or "-", row["role"], str(row["capacity"]),
                      str(row["open_leads"]), "yes" if row["available"] else f"no: {row['why_not']}")
    console.print(table)


@directory_app.command("pto")
def directory_pto(
    rep: Annotated[str, typer.Argument(help="The rep's CRM user id.")],
    start: Annotated[datetime, typer.Argument(help="First day away (YYYY-MM-DD).", formats=["%Y-%m-%d"])],
    end: Annotated[datetime, typer.Argument(help="Last day away, inclusive.", formats=["%Y-%m-%d"])],
) -> None:
    """Record PTO: routing never picks the rep on those days (in their team's time zone)."""
    from sidecar.directory import add_pto
    from sidecar.engine.policies import PolicyBook
    from sidecar.store.models import Rep, Team

    with transaction(_sessions()) as session:
        row = session.get(Rep, rep)
        if row is None:
            errors.print(f"no rep {rep}: run `sidecar directory show` for the ids")
            raise typer.Exit(1)
        team = session.get(Team, row.team_id) if row.team_id else None
        _version, policy = PolicyBook().active(session)
        tz = policy.markets[team.market].tz if team and team.market in policy.markets else "UTC"
        add_pto(session, rep, start.date(), end.date(), tz)
        audit.record(session, at=_now(), kind="pto_recorded", actor="cli",
                     details={"rep": rep, "from": start.date().isoformat(), "to": end.date().isoformat(), "tz": tz})
    console.print(f"{row.name} is away {start.date()}..{end.date()} ({tz})")


@app.command()
def backfill(
    crm: Annotated[str, typer.Argument(help="salesforce")],
    since: Annotated[datetime | None, typer.Option(help="Only leads changed since (YYYY-MM-DD).",
                                                   formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z"])] = None,
) -> None:
    """Read existing leads (Bulk API 2.0 from 10,000 leads, REST below) with a progress bar."""
    from rich.progress import Progress

    from sidecar import wiring

    if crm != "salesforce":
        errors.print("backfill supports salesforce; HubSpot's first poll reads everything with the search API")
        raise typer.Exit(2)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with Progress(console=console) as bar:
        task = bar.add_task("leads", total=None)
        stats = wiring.backfill_salesforce(Settings(), _sessions(), since,
                                           lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"{stats.snapshots} leads read via {stats.via} in {stats.api_calls} API calls")
