"""The `sidecar` command. The command line is the only layer that reads the wall clock (cli_common.now)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from sidecar import (
    __version__,
    audit,
    bench_clock,
    cli_calibrate,
    cli_demo,
    cli_explain,
    cli_queue,
    cli_report,
    cli_simulate,
)
from sidecar.cli_common import (
    DAY,
    EXAMPLES,
    PolicyOption,
    SidecarGroup,
    console,
    fail,
    load_or_exit,
    now,
    parse_since,
    sessions,
)
from sidecar.cli_directory import directory_app
from sidecar.cli_errors import port_problem
from sidecar.cli_outcomes import outcomes_app
from sidecar.cli_policy import policy_app
from sidecar.policy.version import record_version
from sidecar.settings import Settings, env_file_warning
from sidecar.status import duration_words, gather, poll_words
from sidecar.store.db import make_engine, migrate, session_factory, transaction

app = typer.Typer(help="Lead-SLA sidecar: warns, escalates and reassigns before leads fall through.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=SidecarGroup,
                  rich_markup_mode=None)  # plain help: flags without "<bool>", nothing boxed or wrapped when piped
app.add_typer(policy_app, name="policy")
app.add_typer(directory_app, name="directory")
app.add_typer(outcomes_app, name="outcomes")
audit_app = typer.Typer(help="Read the audit log.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(audit_app, name="audit")
SALESFORCE_LEAD_ID = re.compile(r"^00Q[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?$")  # 15 or 18 characters
CRMS = ("salesforce", "hubspot")
cli_queue.register(app)  # `sidecar queue list|resolve`, `sidecar compliance clear|reject`
app.command(name="explain")(cli_explain.explain)
app.command(name="report")(cli_report.report)
app.command(name="calibrate")(cli_calibrate.calibrate_command)
app.command(name="simulate")(cli_simulate.simulate_command)
app.command(name="demo")(cli_demo.demo)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"sidecar {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback when a command fails.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Lead-SLA sidecar: warns, escalates and reassigns before leads fall through."""


@app.command()
def init(
    hubspot: Annotated[bool, typer.Option("--hubspot", help="Also create the sidecar's HubSpot properties.")] = False,
) -> None:
    """Create the database and copy the example config files.

    Runs the migrations; an existing config file is never overwritten."""
    settings = Settings()
    if hubspot and not settings.hubspot_access_token:
        raise fail("--hubspot needs a HubSpot token: set SIDECAR_HUBSPOT_ACCESS_TOKEN in .env (a private app's "
                   "access token, Settings > Integrations > Private Apps)")
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
    offline: Annotated[bool, typer.Option(
        "--offline", help="Only the config files; do not call CRMs or Slack.")] = False,
) -> None:
    """Preflight: config files, database, CRMs, Slack, webhook URLs.

    Every config file, the database, each CRM's and Slack's credentials, scopes, fields and
    reachability, and the webhook URLs to enter. Exit 0 only when `sidecar run` has all it needs."""
    from sidecar import wiring
    from sidecar.preflight import CheckContext, Level, run_steps

    settings = Settings()
    findings = run_steps(CheckContext(settings, policy or settings.policy_file, wiring, offline=offline))
    problems = sorted((f for f in findings if f.level is Level.PROBLEM), key=lambda f: (f.where, f.line or 0))
    for finding in findings:
        if finding.level is Level.OK:
            console.print(str(finding), markup=False, highlight=False)
    for finding in findings:
        if finding.level is Level.WARNING:
            console.print(f"warning: {finding}", markup=False, highlight=False)
    for finding in problems:
        console.print(str(finding), markup=False, highlight=False)
    warnings = sum(f.level is Level.WARNING for f in findings)
    if problems:
        raise fail(f"{len(problems)} problem(s), {warnings} warning(s): fix the problems above, then run "
                   "`sidecar check` again")
    console.print(f"ready: {warnings} warning(s)" + ("" if offline else "; start with `sidecar run`"))


@app.command()
def status() -> None:
    """Overdue and due-soon leads, failed effects, last poll per CRM.

    Leads by name with owner, rule and time left (overdue apart from due within the hour), effects
    that could not be delivered and what to fix, and each CRM's last poll with its error."""
    at = now()
    with transaction(sessions()) as session:
        report = gather(session, at)
    console.print(f"clocks: {report.open_clocks} running, {report.paused_clocks} paused; "
                  f"{len(report.overdue)} leads overdue, {len(report.due)} due within the hour")
    for title, lines, when in (("overdue (breached, nobody has acted yet)", report.overdue, "overdue for"),
                               ("due within the hour", report.due, "time left")):
        if not lines:
            continue
        console.print(f"{title}:", markup=False, highlight=False)  # not a table title: that would wrap
        table = Table()
        for column in ("lead", "owner", "team", "rule", when, "id"):
            table.add_column(column)
        for line in lines:
            left = "due now" if line.left <= timedelta(0) and when == "time left" else duration_words(line.left)
            table.add_row(line.name or "-", line.owner, line.team, line.rule_id, left, f"{line.crm} {line.crm_id}")
        console.print(table)
    backlog = (f" (oldest waiting {duration_words(at - report.oldest_pending)})"
               if report.oldest_pending is not None else "")
    console.print("outbox: " + (", ".join(f"{n} {s}" for s, n in sorted(report.outbox.items())) or "empty")
                  + backlog, markup=False, highlight=False)
    for poll in report.polls:
        console.print(f"last poll: {poll_words(poll, at)}", markup=False, highlight=False)
    if not report.polls:
        console.print("last poll: none yet (`sidecar run` polls each configured CRM)")
    if report.dead:
        table = Table(title="effects that could not be delivered (fix, then they are not retried)")
        for column in ("key", "effect", "what to fix"):
            table.add_column(column)
        for key, action, reason in report.dead:
            table.add_row(key, action, reason)
        console.print(table)
    if report.unknown:
        table = Table(title="CRM values the policy or directory does not know (nothing is blocked; add them)")
        for column in ("what", "crm", "value", "leads", "e.g.", "meanwhile"):
            table.add_column(column)
        for item in report.unknown:
            table.add_row(item.what, item.crm, item.value[:60], str(item.leads), item.example_crm_id, item.effect)
        console.print(table)
    if report.dead_intake:
        table = Table(title="webhook ids the CRM refused to read (set aside; polling still covers real leads)")
        for column in ("crm", "id", "why"):
            table.add_column(column)
        for crm, crm_id, why in report.dead_intake:
            table.add_row(crm, crm_id[:40], why)
        console.print(table)


@audit_app.command("export")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    lead: Annotated[str | None, typer.Option("--lead", help="Only this CRM lead id.")] = None,
    since: Annotated[datetime | None, typer.Option(
        "--since", help="Only rows from this day on, YYYY-MM-DD (UTC), or a time like 2026-11-01T09:00:00+00:00.",
        parser=parse_since, metavar=DAY)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")] = None,
) -> None:
    """Write the audit log as JSON lines or CSV, oldest first."""
    if fmt not in ("jsonl", "csv"):
        raise fail("--format must be jsonl or csv", 2)
    with transaction(sessions()) as session:
        lines = audit.export(session, fmt, lead, since)
        if out is None:
            for line in lines:
                typer.echo(line, nl=False)
        else:
            with out.open("w", encoding="utf-8") as handle:
                handle.writelines(lines)


@app.command()
def run() -> None:
    """Run the sidecar: poll, take webhooks, escalate, write back.

    On real time until Ctrl-C or SIGTERM."""
    from sidecar import logs, service
    from sidecar.store.reachable import until_reachable

    settings = Settings()
    busy = port_problem(settings.web_port, "SIDECAR_WEB_PORT")
    if busy:
        raise fail(busy)
    logs.configure(settings.log_level, settings.log_format)
    env_warning = env_file_warning()
    if env_warning:
        logging.getLogger("sidecar").warning(env_warning)
    try:  # the wall clock, or the test/benchmark accelerated one (sidecar.bench_clock)
        clock: Callable[[], datetime] = bench_clock.from_env(os.environ, time.time) or now
    except bench_clock.ClockSettingError as exc:
        raise fail(str(exc)) from exc
    try:
        # A database restarting right now (a restarted instance, a restarted cluster) is waited for.
        service.run(settings, until_reachable(sessions, "database unreachable at start"), clock)
    except service.CannotStart as exc:
        raise fail(str(exc)) from exc


@app.command()
def revert(
    lead: Annotated[str, typer.Argument(help="The CRM id of the lead (Salesforce 00Q..., HubSpot digits).")],
    crm: Annotated[str | None, typer.Option(
        help="salesforce or hubspot (default: guessed from the id's shape, else both are searched)")] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit).")] = "",
    actor: Annotated[str, typer.Option(help="Who reverts (team lead's user id or name).")] = "admin",
) -> None:
    """Give a reassigned lead back to its original owner.

    Only a reassignment the sidecar made; audited and linked to it."""
    from sidecar.engine.patterns.shared import EngineContext
    from sidecar.engine.policies import PolicyBook
    from sidecar.engine.revert import RevertError, revert_reassignment
    from sidecar.links import RecordLinks
    from sidecar.store.models import Lead

    if crm is not None and crm not in CRMS:
        raise fail("--crm must be salesforce or hubspot", 2)
    guessed = _crm_of(lead)
    searched = [crm] if crm else [guessed] if guessed else list(CRMS)
    with transaction(sessions()) as session:
        found = session.scalars(select(Lead.crm).where(Lead.crm_id == lead, Lead.crm.in_(searched))).first()
        if found is None:
            how = " (given with --crm)" if crm else " (guessed from the id's shape)" if len(searched) == 1 else ""
            raise fail(f"no lead {lead} in the sidecar's store (searched {' and '.join(searched)}{how}); check "
                       "the id (Salesforce lead ids start 00Q, HubSpot ids are digits) or pass --crm")
        try:
            row = revert_reassignment(session, EngineContext(PolicyBook(), RecordLinks()), found, lead, actor,
                                      reason, now())
        except RevertError as exc:
            raise fail(str(exc)) from exc
        console.print(f"reverted: owner goes back to {row.details['to_owner']} (audit #{row.id}); "
                      "the change is written to the CRM by the running sidecar")


def _crm_of(lead_id: str) -> str | None:
    """The CRM whose id shape `lead_id` has: Salesforce lead ids start 00Q (15/18 chars), HubSpot's are digits."""
    if SALESFORCE_LEAD_ID.match(lead_id):
        return "salesforce"
    return "hubspot" if lead_id.isdigit() else None


@app.command()
def backfill(
    crm: Annotated[str, typer.Argument(help="The CRM to read: salesforce (HubSpot's first poll reads everything).")],
    since: Annotated[datetime | None, typer.Option(help="Only leads changed since this day, YYYY-MM-DD (UTC).",
                                                   parser=parse_since, metavar=DAY)] = None,
) -> None:
    """Read existing Salesforce leads with a progress bar.

    Bulk API 2.0 from 10,000 leads, REST below; each page commits with its cursor."""
    from rich.progress import Progress

    from sidecar import wiring

    if crm != "salesforce":
        raise fail("backfill supports salesforce; HubSpot's first poll reads everything with the search API", 2)
    settings = Settings()
    if not wiring.has_salesforce(settings):
        raise fail("no Salesforce credentials: set SIDECAR_SF_USERNAME, SIDECAR_SF_PASSWORD and "
                   "SIDECAR_SF_SECURITY_TOKEN (or SIDECAR_SF_CLIENT_ID and SIDECAR_SF_CLIENT_SECRET) in .env")
    with Progress(console=console) as bar:
        task = bar.add_task("leads", total=None)
        stats = wiring.backfill_salesforce(settings, sessions(), since,
                                           lambda done, total: bar.update(task, completed=done, total=total), now)
    console.print(f"{stats.snapshots} leads read via {stats.via} in {stats.api_calls} API calls")
