"""`sidecar queue` (the ops review and compliance queues) and `sidecar compliance clear|reject`."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer
from rich.table import Table

from sidecar.cli_common import console, errors, now, sessions
from sidecar.store.db import transaction

queue_app = typer.Typer(help="Review queues: stuck leads (ops_review) and compliance holds.", no_args_is_help=True)
compliance_app = typer.Typer(help="Decide leads on compliance hold.", no_args_is_help=True)

QueueOption = Annotated[str | None, typer.Option("--queue", help="ops_review or compliance (default: both).")]
CrmOption = Annotated[str, typer.Option("--crm", help="salesforce or hubspot")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit and on the record).")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who decides (default: your OS user name).")]


def register(app: typer.Typer) -> None:
    """Add `queue` and `compliance` to the `sidecar` command."""
    app.add_typer(queue_app, name="queue")
    app.add_typer(compliance_app, name="compliance")


def _actor(by: str | None) -> str:
    return by or getpass.getuser()


@queue_app.command("list")
def queue_list(
    queue: QueueOption = None,
    resolved: Annotated[bool, typer.Option("--all", help="Include resolved items.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per item, for scripts.")] = False,
) -> None:
    """Open items, oldest first, with their time in review."""
    from sidecar import review_queue
    from sidecar.store.models import Lead

    if queue is not None and queue not in review_queue.QUEUES:
        errors.print(f"--queue must be one of: {', '.join(review_queue.QUEUES)}")
        raise typer.Exit(2)
    at = now()
    with transaction(sessions()) as session:
        rows = [review_queue.as_json(item, session.get(Lead, item.lead_id), at)
                for item in review_queue.items(session, queue, include_resolved=resolved)]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
        return
    table = Table(title=f"review queue{f' {queue}' if queue else 's'}: {len(rows)} item(s)")
    for column in ("id", "queue", "lead", "reason", "rule", "in review", "resolved"):
        table.add_column(column)
    for row in rows:
        lead = row["lead"] or {}
        table.add_row(str(row["id"]), row["queue"], f"{lead.get('name')} ({lead.get('crm')} {lead.get('crm_id')})",
                      row["reason"], row["rule_id"] or "", f"{row['age_s'] / 3600:.1f} h",
                      f"{row['resolved_by']}: {row['resolution']}" if row["resolved_at"] else "")
    console.print(table)


@queue_app.command("resolve")
def queue_resolve(
    item: Annotated[int, typer.Argument(help="The item id (`sidecar queue list`).")],
    reason: ReasonOption = "",
    by: ByOption = None,
) -> None:
    """Close an ops-review item (compliance holds close with `sidecar compliance clear|reject`)."""
    from sidecar import review_queue

    try:
        with transaction(sessions()) as session:
            review_queue.resolve(session, item, _actor(by), reason, now())
    except review_queue.ReviewError as exc:
        errors.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"item #{item} resolved")


def _decide(decision: str, lead: str, crm: str, reason: str, by: str | None) -> None:
    from sidecar.engine.patterns.compliance_decisions import ComplianceError, decide
    from sidecar.engine.patterns.shared import EngineContext
    from sidecar.engine.policies import PolicyBook
    from sidecar.links import RecordLinks

    try:
        with transaction(sessions()) as session:
            row = decide(session, EngineContext(PolicyBook(), RecordLinks()), crm, lead, decision, _actor(by),
                         reason, now())
            status = row.details.get("crm_status")
    except (ComplianceError, LookupError) as exc:
        errors.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"{'cleared' if decision == 'clear' else 'rejected'}: {crm} lead {lead} goes to status "
                  f"{status!r} (audit #{row.id}); the running sidecar writes it to the CRM")


@compliance_app.command("clear")
def compliance_clear(
    lead: Annotated[str, typer.Argument(help="The CRM id of the lead.")],
    reason: ReasonOption = "",
    crm: CrmOption = "salesforce",
    by: ByOption = None,
) -> None:
    """Release a held lead: status back to NEW, a full SLA window from now, routed and its owner told."""
    _decide("clear", lead, crm, reason, by)


@compliance_app.command("reject")
def compliance_reject(
    lead: Annotated[str, typer.Argument(help="The CRM id of the lead.")],
    reason: ReasonOption = "",
    crm: CrmOption = "salesforce",
    by: ByOption = None,
) -> None:
    """Disqualify a held lead (DISQUALIFIED_COMPLIANCE in the CRM, with the reason on the record)."""
    _decide("reject", lead, crm, reason, by)
