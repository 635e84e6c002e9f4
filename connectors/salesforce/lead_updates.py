"""Status and tag writes on a Salesforce Lead (compliance holds, churn tags), each exactly once.

Read Status (and the tags field), then PATCH only what differs: a replay writes nothing. Not
conditional on the modification time like owner changes (owners.py): a compliance hold must win over
a rep's edits. What must not be overwritten is a *status* a person set since the decision: when
`expect_status` is given and Status is neither it nor the target, ConflictError (the person's status
stands). The reason goes into `writer.status_reason` when configured (the core also writes it as a
note). Tags go into `writer.tags` (a multi-select picklist or a text field on Lead, values joined with
";" as sObject Rows PATCH takes a multi-select picklist), keeping the values it has.
"""

from __future__ import annotations

from typing import Any

from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.errors import translate
from connectors.salesforce.fields import FieldMap
from sidecar.ports import ConflictError, LeadUpdate, PermanentError


def update_lead(client: SalesforceClient, fields: FieldMap, update: LeadUpdate) -> None:
    lead_id = update.lead.crm_id
    names = [fields.status, *([fields.tags] if update.add_tags and fields.tags else [])]
    current = client.rest("GET", f"sobjects/Lead/{lead_id}", params={"fields": ",".join(names)}) or {}
    values: dict[str, Any] = {}
    status = current.get(fields.status)
    if update.crm_status is not None and status != update.crm_status:
        if update.expect_status is not None and status != update.expect_status:
            raise ConflictError(f"lead {lead_id} has Status {status!r}, not {update.expect_status!r}: a "
                                f"person changed it since, so it stays (not set to {update.crm_status!r})")
        values[fields.status] = update.crm_status
        if update.reason and fields.status_reason:
            values[fields.status_reason] = update.reason[:255]
    if update.add_tags:
        if not fields.tags:
            raise PermanentError("cannot tag the lead: set writer.tags in config/salesforce.fields.yaml to a "
                                 "multi-select picklist on Lead with the values " + ", ".join(update.add_tags))
        have = [tag for tag in str(current.get(fields.tags) or "").split(";") if tag]
        if any(tag not in have for tag in update.add_tags):
            values[fields.tags] = ";".join([*have, *(t for t in update.add_tags if t not in have)])
    if not values:
        return  # our own earlier write, retried (or a person made the same change)
    try:
        client.raw(lambda sf: sf.restful(f"sobjects/Lead/{lead_id}", method="PATCH", json=values))
    except Exception as exc:  # a refused picklist value is permanent; limits and outages are retried
        raise translate(exc) from exc
