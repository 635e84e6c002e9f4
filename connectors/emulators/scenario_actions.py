"""The scenario actions that script the escalation patterns (see `scenario.py` for the format):
set_score, flag, signal, complete_task, compliance_decision.

CRM-side actions (a score change, a flag set, a task ticked off) go through the emulated CRMs'
APIs as a person or an integration would, using the demo org's configured field maps, so the
sidecar sees them only through its pollers and webhooks. The sidecar-side actions (a churn signal,
a compliance officer's decision) call the same core functions `POST /api/signals` and
`sidecar compliance clear|reject` call, on the demo's virtual clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.emulators.demo_org import SALESFORCE_FIELDS, hubspot_fields
from connectors.emulators.reps import HubSpotReps, SalesforceReps
from sidecar.engine.patterns.churn import SignalIn, raise_signal
from sidecar.engine.patterns.compliance_decisions import decide
from sidecar.ports import FIRST_RESPONSE_TASK_PREFIX
from sidecar.store.db import transaction
from sidecar.store.models import Lead

if TYPE_CHECKING:
    from connectors.emulators.demo import Demo, Tracked

PATTERN_ACTIONS = ("set_score", "flag", "signal", "complete_task", "compliance_decision")
TASK_CHOICES = ("first_response", "any")


def apply(demo: Demo, action: str, args: dict[str, Any], now: datetime) -> None:
    lead = demo.tracked[str(args["lead"])]
    if action == "set_score":
        _update(demo, lead, {_score_field(demo, lead.crm): args["score"]})
    elif action == "flag":
        _update(demo, lead, {_flag_field(demo, lead.crm, str(args["flag"])): True})
    elif action == "signal":
        with transaction(demo.sessions) as session:
            row = _lead_row(session, lead)
            raise_signal(session, demo.runtime.ctx, row, SignalIn(str(args["id"]), str(args["type"]), "api"), now)
    elif action == "complete_task":
        _complete_task(demo, lead, str(args["task"]))
    elif action == "compliance_decision":
        with transaction(demo.sessions) as session:
            decide(session, demo.runtime.ctx, lead.crm, lead.crm_id, str(args["decision"]),
                   str(args.get("by") or "scenario"), str(args.get("reason") or ""), now)


def _update(demo: Demo, lead: Tracked, fields: dict[str, Any]) -> None:
    driver = demo.drivers[lead.crm]
    if isinstance(driver, SalesforceReps):
        driver._call("PATCH", f"Lead/{lead.crm_id}", driver.emulator.integration_user_id, fields)
    else:
        assert isinstance(driver, HubSpotReps)
        driver._call("PATCH", f"/crm/v3/objects/contacts/{lead.crm_id}",
                     {"properties": {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}})


def _score_field(demo: Demo, crm: str) -> str:
    if crm == "salesforce":
        return str(SALESFORCE_FIELDS.score)
    assert demo.hubspot is not None
    return hubspot_fields(demo.hubspot.portal_id).score


def _flag_field(demo: Demo, crm: str, flag: str) -> str:
    """The CRM field that carries `flag`, from the connector's field map (Salesforce maps field -> flag)."""
    if crm == "salesforce":
        fields = {name: field for field, name in SALESFORCE_FIELDS.flags.items()}
    else:
        assert demo.hubspot is not None
        fields = dict(hubspot_fields(demo.hubspot.portal_id).flags)
    if flag not in fields:
        raise ValueError(f"scenario flag {flag!r}: the demo's {crm} field map has no field for it; "
                         f"known: {', '.join(sorted(fields))}")
    return fields[flag]


def _lead_row(session: Session, lead: Tracked) -> Lead:
    row = session.scalars(select(Lead).where(Lead.crm == lead.crm, Lead.crm_id == lead.crm_id)).first()
    if row is None:
        raise ValueError(f"scenario lead {lead.key}: the sidecar has not seen it yet (script the action later)")
    return row


def _complete_task(demo: Demo, lead: Tracked, which: str) -> None:
    """The owner ticks off the sidecar's oldest open task on the lead (first_response: only that one)."""
    driver = demo.drivers[lead.crm]
    prefix = FIRST_RESPONSE_TASK_PREFIX if which == "first_response" else ""
    if isinstance(driver, SalesforceReps):
        tasks = [t for t in driver.emulator.records("Task") if t["WhoId"] == lead.crm_id and not t["IsClosed"]
                 and t.get("Sidecar_Key__c") and str(t["Sidecar_Key__c"]).startswith(prefix)]
        if tasks:
            driver._call("PATCH", f"Task/{tasks[0]['Id']}", str(tasks[0]["OwnerId"]), {"Status": "Completed"})
            return
    else:
        assert isinstance(driver, HubSpotReps) and demo.hubspot is not None
        hubspot = demo.hubspot
        tasks = [t for t in hubspot.records("tasks")
                 if t["properties"].get("hs_task_status") != "COMPLETED"
                 and str(t["properties"].get("sidecar_idempotency_key") or "").startswith(prefix)
                 and t["properties"].get("sidecar_idempotency_key")
                 and hubspot.associations_of("tasks", t["id"], "contacts") == [lead.crm_id]]
        if tasks:
            driver._call("PATCH", f"/crm/v3/objects/tasks/{tasks[0]['id']}",
                         {"properties": {"hs_task_status": "COMPLETED"}})
            return
    raise ValueError(f"scenario complete_task: lead {lead.key} has no open {which} task of the sidecar")
