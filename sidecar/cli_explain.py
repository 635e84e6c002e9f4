"""`sidecar explain CRM LEAD`: why a lead was (or was not) warned, escalated or reassigned."""

from __future__ import annotations

from typing import Annotated

import typer

from sidecar.cli_common import console, errors, now, sessions
from sidecar.store.db import transaction


def explain(
    crm: Annotated[str, typer.Argument(help="salesforce or hubspot")],
    lead: Annotated[str, typer.Argument(help="The CRM id of the lead.")],
) -> None:
    """Why a lead was or was not warned, escalated or reassigned.

    Each clock and step of one lead: the window rule and why it won, the business-time arithmetic,
    the policy version, what each step did and what happened to each effect."""
    from sidecar.engine.policies import PolicyBook
    from sidecar.explain import explain as explain_lead

    if crm not in ("salesforce", "hubspot"):
        errors.print(f"CRM must be salesforce or hubspot, not {crm!r}")
        raise typer.Exit(2)
    try:
        with transaction(sessions()) as session:
            lines = explain_lead(session, PolicyBook(), crm, lead, now())
    except LookupError as exc:
        errors.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from exc
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
