"""`sidecar demo`: the real sidecar against emulated Salesforce, HubSpot and Slack, on virtual time.

It ends with the counts, a short story per escalated lead (sidecar.escalations) and, with `--serve`,
keeps the dashboard and the webhook receivers up until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.table import Table

from sidecar import escalations
from sidecar.audit import Pattern
from sidecar.cli_common import console, fail
from sidecar.cli_errors import port_problem
from sidecar.engine.policies import PolicyBook
from sidecar.store.db import make_engine, session_factory, transaction

TOKENS = "tokens demo-viewer-token, demo-manager-token, demo-admin-token"
STORIES = 12  # escalated leads told at the end; the dashboard and `sidecar report` have the rest


def demo(
    crm: Annotated[str, typer.Option(help="salesforce, hubspot or both")] = "both",
    seed: Annotated[int, typer.Option(help="Same seed, same org, same audit.")] = 1,
    scenario: Annotated[Path | None, typer.Option(help="A scripted day (see config/scenarios/).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy YAML (default: the example policy).")] = None,
    speed: Annotated[str, typer.Option(help="Virtual minutes per real minute, or 'max'.")] = "max",
    duration: Annotated[str, typer.Option(help="Virtual time to run, e.g. 12h, 2d.")] = "1d",
    out: Annotated[Path | None, typer.Option(help="Where to write audit, CRM, Slack and request files.")] = None,
    port: Annotated[int, typer.Option(help="Port of the dashboard and webhook receivers (0 = any free port).")] = 0,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Keep the dashboard and receivers up after the run, until Ctrl-C or SIGTERM.")] = False,
) -> None:
    """Run against emulated Salesforce, HubSpot and Slack.

    On virtual time, without any account: the same engine and connectors as `sidecar run`."""
    from rich.progress import Progress

    from sidecar import wiring_demo

    if crm not in ("salesforce", "hubspot", "both"):
        raise fail("--crm must be salesforce, hubspot or both", 2)
    try:
        span = wiring_demo.parse_duration(duration)
        rate = None if speed == "max" else float(speed)
    except ValueError as exc:
        raise fail(f"{exc} (--duration like 12h or 2d; --speed a number or 'max')", 2) from exc
    busy = port_problem(port, "--port, or 0 for any free port")
    if busy:
        raise fail(busy)
    target = out or Path("sidecar-demo")
    target.mkdir(parents=True, exist_ok=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("virtual time", total=span.total_seconds())
        start: list[datetime] = []

        def show(at: datetime, summary: Any) -> None:
            if not start and summary.webhook_url:
                console.print(f"dashboard {summary.webhook_url}/dashboard/ while the demo runs ({TOKENS})")
            start.append(start[0] if start else at)
            bar.update(task, completed=(at - start[0]).total_seconds(),
                       description=f"{at:%a %H:%M} UTC  warnings {summary.ladder.get('warning', 0)}  "
                                   f"breaches {summary.ladder.get('breach', 0)}  "
                                   f"reassigned {summary.actions.get('reassign', 0)}")

        def finished(summary: Any) -> None:
            bar.stop()
            _tell(summary, duration, target)
            if serve:
                console.print(f"dashboard {summary.webhook_url}/dashboard/ ({TOKENS}); serving until Ctrl-C or "
                              "SIGTERM")
                _wait_for_signal()

        wiring_demo.run_demo(crm=crm, seed=seed, scenario=scenario, policy=policy, speed=rate, duration=span,
                        out=target, port=port, progress=show, finished=finished)


def _tell(summary: Any, duration: str, target: Path) -> None:
    table = Table(title=f"demo: {duration} of virtual time in {summary.seconds:.0f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    effects = summary.effects
    for label, value in (
        ("leads", summary.leads),
        ("warnings to owners (before 100 %)", summary.ladder.get("warning", 0)),
        ("breaches (first step at 100 %)", summary.ladder.get("breach", 0)),
        ("reassignments", summary.actions.get("reassign", 0)),
        ("CRM tasks written", effects.get("create_task:done", 0)),
        ("CRM breach notes", effects.get("add_note:done", 0)),
        ("CRM owner changes", effects.get("change_owner:done", 0)),
        ("Slack messages", summary.slack_messages),
        ("Teams cards", summary.teams_cards),
        ("effects that failed", sum(n for key, n in effects.items() if key.endswith(":dead"))),
        *((f"audit rows: {pattern.value}", summary.patterns.get(pattern.value, 0)) for pattern in Pattern),
    ):
        table.add_row(label, str(value))
    console.print(table)
    told = story_lines(target / "demo.db")
    if told:
        console.print("escalated leads:")
        for line in told[:STORIES]:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        if len(told) > STORIES:
            console.print(f"  ... and {len(told) - STORIES} more: see the dashboard or `sidecar report`")
    console.print(f"files in {target}/: audit.jsonl, crm.json, slack.json, teams.json, requests.jsonl")


def story_lines(database: Path) -> list[str]:
    """The escalated leads' stories, read from the demo's own database."""
    engine = make_engine(f"sqlite:///{database}")
    try:
        with transaction(session_factory(engine)) as session:
            return [story.line() for story in escalations.stories(session, PolicyBook())]
    finally:
        engine.dispose()


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM; the caller's `finally` then stops the servers."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):  # a bounded wait, so the signal handler gets to run on every platform
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
