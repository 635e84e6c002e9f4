"""Simulated people acting in the emulated CRMs over their HTTP APIs, as reps do in a real org:
create leads (web forms, imports), log calls and emails, change status, change owner.

The sidecar only ever sees these actions the way it sees a real org: through its pollers and
webhooks. Reads of "who owns this lead now" go straight to the emulator: that is the simulation
knowing its own world, not traffic the sidecar would see.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import requests

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator

CONTACTED = {"salesforce": "Working - Contacted", "hubspot": "IN_PROGRESS"}
NEW = {"salesforce": "Open - Not Contacted", "hubspot": "NEW"}
ON_HOLD = {"salesforce": "On Hold", "hubspot": "BAD_TIMING"}  # the example policy maps both to ON_HOLD
SCORE = {"salesforce": "Lead_Score__c", "hubspot": "lead_score"}  # the demo org's score fields (field maps)


class RepDriver(Protocol):
    crm: str

    def create_lead(self, fields: dict[str, Any], owner: str) -> str: ...
    def log_activity(self, crm_id: str, user: str, kind: str, at: datetime) -> None: ...
    def update(self, crm_id: str, changes: dict[str, Any], user: str) -> None: ...
    def owner_of(self, crm_id: str) -> str | None: ...


class SalesforceReps:
    """Lead fields: first_name, last_name, company, email, market, source, status, score, tier,
    deal_size, flags (list). Custom fields the demo org has: Market__c, Lead_Score__c, Account_Tier__c,
    Estimated_Deal_Size__c, Sanctions_Match__c, Usage_Drop__c."""

    crm = "salesforce"
    CUSTOM: ClassVar[dict[str, tuple[tuple[str, str], ...]]] = {
              "Lead": (("Market__c", "string"), ("Lead_Score__c", "double"), ("Account_Tier__c", "string"),
                       ("Estimated_Deal_Size__c", "currency"), ("Sanctions_Match__c", "boolean"),
                       ("Usage_Drop__c", "boolean"), ("Sidecar_Tags__c", "string")),
              # Standard Task fields this small emulated schema leaves out.
              "Task": (("CompletedDateTime", "datetime"), ("ReminderDateTime", "datetime"),
                       ("IsReminderSet", "boolean"))}
    FLAGS: ClassVar[dict[str, str]] = {"sanctions_match": "Sanctions_Match__c", "usage_drop": "Usage_Drop__c"}

    def __init__(self, emulator: SalesforceEmulator, http: requests.Session) -> None:
        self.emulator, self.http = emulator, http
        self.base = f"{emulator.url}/services/data/v{emulator.api_version}/sobjects"
        self._tokens: dict[str, str] = {}
        for sobject, fields in self.CUSTOM.items():
            for name, ftype in fields:
                emulator.add_field(sobject, name, ftype)
        # The sidecar's idempotency key, set up as the install guide says: External ID + Unique.
        emulator.add_field("Task", "Sidecar_Key__c", "string", external_id=True, unique=True)

    def _call(self, method: str, path: str, user: str, body: dict[str, Any]) -> Any:
        token = self._tokens.get(user) or self._tokens.setdefault(user, self.emulator.issue_token(user))
        response = self.http.request(method, f"{self.base}/{path}", json=body, timeout=10,
                                     headers={"Authorization": f"Bearer {token}"})
        if response.status_code >= 400:
            raise RuntimeError(f"Salesforce emulator refused {method} {path}: {response.text}")
        return response.json() if response.content else None

    def create_lead(self, fields: dict[str, Any], owner: str) -> str:
        body = {"FirstName": fields["first_name"], "LastName": fields["last_name"],
                "Company": fields["company"], "Email": fields.get("email"), "LeadSource": fields.get("source"),
                "Status": fields.get("status") or NEW["salesforce"], "OwnerId": owner,
                "Market__c": fields.get("market"), "Lead_Score__c": fields.get("score"),
                "Account_Tier__c": fields.get("tier"), "Estimated_Deal_Size__c": fields.get("deal_size")}
        for flag in fields.get("flags") or ():
            body[self.FLAGS[flag]] = True
        created = self._call("POST", "Lead", self.emulator.integration_user_id,
                             {k: v for k, v in body.items() if v is not None})
        return str(created["id"])

    def log_activity(self, crm_id: str, user: str, kind: str, at: datetime) -> None:
        subtype = "Call" if kind == "call" else "Email"
        self._call("POST", "Task", user, {
            "WhoId": crm_id, "OwnerId": user, "Subject": f"{subtype}: first contact", "TaskSubtype": subtype,
            "Status": "Completed", "CompletedDateTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "ActivityDate": at.date().isoformat()})

    def update(self, crm_id: str, changes: dict[str, Any], user: str) -> None:
        names = {"status": "Status", "owner": "OwnerId"}
        self._call("PATCH", f"Lead/{crm_id}", user, {names.get(k, k): v for k, v in changes.items()})

    def owner_of(self, crm_id: str) -> str | None:
        record = self.emulator.get("Lead", crm_id)
        return str(record["OwnerId"]) if record else None


class HubSpotReps:
    """The same people in HubSpot: contacts, call/email engagements, property updates. Custom
    contact properties of the demo portal: sales_market, lead_source, lead_score, account_tier,
    expected_deal_size, sanctions_match, usage_drop."""

    crm = "hubspot"
    CUSTOM: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("sales_market", "string", "text"), ("lead_source", "string", "text"),
        ("account_tier", "string", "text"), ("expected_deal_size", "number", "number"),
        ("lead_score", "number", "number"),  # hubspotscore is computed by HubSpot, not writable
        ("sanctions_match", "bool", "booleancheckbox"), ("usage_drop", "bool", "booleancheckbox"))
    ASSOCIATION: ClassVar[dict[str, int]] = {"calls": 194, "emails": 198}

    def __init__(self, emulator: HubSpotEmulator, http: requests.Session, token: str) -> None:
        self.emulator, self.http = emulator, http
        self.headers = {"Authorization": f"Bearer {token}"}
        for name, ptype, field_type in self.CUSTOM:
            self._call("POST", "/crm/v3/properties/contacts", {
                "name": name, "label": name.replace("_", " "), "type": ptype, "fieldType": field_type,
                "groupName": "contactinformation"})
        # Where the sidecar adds tags (churn risk): multiple checkboxes, the tag one of its options.
        self._call("POST", "/crm/v3/properties/contacts", {
            "name": "sidecar_tags", "label": "Sidecar tags", "type": "enumeration", "fieldType": "checkbox",
            "groupName": "contactinformation", "options": [{"label": "Churn risk elevated",
                                                            "value": "churn-risk-elevated"}]})

    def _call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        response = self.http.request(method, self.emulator.url + path, json=body, headers=self.headers,
                                     timeout=10)
        if response.status_code >= 400 and response.status_code != 409:  # 409: property exists already
            raise RuntimeError(f"HubSpot emulator refused {method} {path}: {response.text}")
        return response.json() if response.content else None

    def create_lead(self, fields: dict[str, Any], owner: str) -> str:
        props = {"firstname": fields["first_name"], "lastname": fields["last_name"],
                 "company": fields["company"], "email": fields.get("email"),
                 "hs_lead_status": fields.get("status") or NEW["hubspot"], "hubspot_owner_id": owner,
                 "sales_market": fields.get("market"), "lead_source": fields.get("source"),
                 "lead_score": fields.get("score"), "account_tier": fields.get("tier"),
                 "expected_deal_size": fields.get("deal_size")}
        for flag in fields.get("flags") or ():
            props[flag] = "true"
        created = self._call("POST", "/crm/v3/objects/contacts",
                             {"properties": {k: str(v) for k, v in props.items() if v is not None}})
        return str(created["id"])

    def log_activity(self, crm_id: str, user: str, kind: str, at: datetime) -> None:
        object_type = "calls" if kind == "call" else "emails"
        props = {"hs_timestamp": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "hubspot_owner_id": user}
        if object_type == "calls":
            props |= {"hs_call_title": "First contact", "hs_call_status": "COMPLETED"}
        else:
            props |= {"hs_email_subject": "Following up", "hs_email_direction": "EMAIL"}
        self._call("POST", f"/crm/v3/objects/{object_type}", {"properties": props, "associations": [
            {"to": {"id": crm_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                              "associationTypeId": self.ASSOCIATION[object_type]}]}]})

    def update(self, crm_id: str, changes: dict[str, Any], user: str) -> None:
        names = {"status": "hs_lead_status", "owner": "hubspot_owner_id"}
        self._call("PATCH", f"/crm/v3/objects/contacts/{crm_id}",
                   {"properties": {names.get(k, k): str(v) for k, v in changes.items()}})

    def owner_of(self, crm_id: str) -> str | None:
        for record in self.emulator.records("contacts"):
            if str(record["id"]) == crm_id:
                owner = record["properties"].get("hubspot_owner_id")
                return str(owner) if owner else None
        return None
