"""Deep links to a lead's record in its CRM, for messages and tasks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecordLinks:
    salesforce_base: str = "https://login.salesforce.com"  # the org's instance or My Domain URL
    hubspot_portal_id: str = "0"
    hubspot_object: str = "0-1"  # contacts; "0-136" when leads live on the leads object

    def url(self, crm: str, crm_id: str) -> str:
        if crm == "salesforce":
            return f"{self.salesforce_base.rstrip('/')}/lightning/r/Lead/{crm_id}/view"
        return f"https://app.hubspot.com/contacts/{self.hubspot_portal_id}/record/{self.hubspot_object}/{crm_id}"
