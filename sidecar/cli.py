"""The `sidecar` command. The command line is the only layer that reads the wall clock (cli_common.now)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sidecar import audit
from sidecar.cli_common import EXAMPLES, PolicyOption, console, errors, load_or_exit, now, sessions
from sidecar.cli_directory import directory_app
from sidecar.cli_outcomes import outcomes_app
from sidecar.cli_policy import policy_app
from sidecar.policy.rules import rule_lines
from sidecar.policy.version import record_version, version_of
from sidecar.settings import Settings
from sidecar.status import gather
from sidecar.store.db import make_engine, migrate, session_factory, transaction

app = typer.Typer(help="Lead-SLA sidecar: warns, escalates and reassigns before leads fall through.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(policy_app, name="policy")
app.add_typer(directory_app, name="directory")
app.add_typer(outcomes_app, name="outcomes")
audit_app = typer.Typer(help="Read the audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")



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
    policy = load_or_exit(settings.policy_file)
    with transaction(session_factory(engine)) as session:
        row = record_version(session, policy, str(settings.policy_file), now())
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
    loaded = load_or_exit(path)
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


@app.command()
def status() -> None:
    """Open clocks, steps due within the hour, outbox backlog and dead effects, last poll per CRM."""
    with transaction(sessions()) as session:
        report = gather(session, now())
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
    with transaction(sessions()) as session:
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
                                   f"reassigned {getattr(summary, 'actions', {}).get('reassign', 0)}")

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
        ("reassignments (150 %)", summary.actions.get("reassign", 0)),
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
    store = sessions()
    runtime = wiring.build_runtime(settings, store)
    if not runtime.readers:
        errors.print("no CRM configured: set Salesforce or HubSpot credentials in .env (see .env.example)")
        raise typer.Exit(1)
    web = BackgroundServer(create_app(store, wiring.web_routers(settings, store, runtime.ctx)),
                           settings.web_port)
    console.print(f"webhooks on {web.start()}; CRMs: {', '.join(runtime.readers)}")
    try:
        scheduler.run_forever(runtime, now)
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
    from sidecar.engine.patterns.shared import EngineContext
    from sidecar.engine.policies import PolicyBook
    from sidecar.engine.revert import RevertError, revert_reassignment
    from sidecar.links import RecordLinks

    try:
        with transaction(sessions()) as session:
            row = revert_reassignment(session, EngineContext(PolicyBook(), RecordLinks()), crm, lead, actor,
                                      reason, now())
            console.print(f"reverted: owner goes back to {row.details['to_owner']} (audit #{row.id}); "
                          "the change is written to the CRM by the running sidecar")
    except RevertError as exc:
        errors.print(str(exc))
        raise typer.Exit(1) from exc


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
        stats = wiring.backfill_salesforce(Settings(), sessions(), since,
                                           lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"{stats.snapshots} leads read via {stats.via} in {stats.api_calls} API calls")
