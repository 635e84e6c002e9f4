"""Record merges in the HubSpot emulator (what an admin's "Merge" in the UI, or
POST /crm/v3/objects/contacts/merge, does), as the connector meets them:

- the merged-away (secondary) id keeps answering reads, with the surviving (primary) record under
  the primary's id; search and lists no longer show the secondary;
- the primary's `hs_merged_object_ids` lists the ids merged into it (";"-separated; a community
  answer on HubSpot/hubspot-api-nodejs#6 reads it to learn a contact's merges);
- the secondary's engagements are associated with the primary;
- webhooks: `contact.merge` with `primaryObjectId` and `mergedObjectIds` (developers.hubspot.com
  changelog "New subscription types for Webhooks"), and `contact.deletion` for the secondary
  (amp-labs/connectors#3487: "HubSpot fires contact.deletion for each merged-away secondary record").
Mixed into `HubSpotEmulator`. HubSpot's choice of surviving property values is not modelled: the
primary keeps its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from connectors.emulators.hubspot_schema import OBJECT_TYPES, resolve_type
from connectors.emulators.hubspot_store import Store
from connectors.emulators.hubspot_webhooks import WebhookOutbox

MERGED_IDS = "hs_merged_object_ids"


class HubSpotMerges:
    clock: Callable[[], datetime]
    store: Store
    webhooks: WebhookOutbox | None
    _lock: threading.RLock

    def merge(self, object_type: str, primary_id: str, secondary_id: str) -> None:
        with self._lock:
            kind = resolve_type(object_type)
            primary = self.store.get(kind, str(primary_id))
            secondary = self.store.get(kind, str(secondary_id))
            if primary.id == secondary.id:
                raise ValueError(f"{kind.singular} {secondary_id} is already merged into {primary.id}")
            now = self.clock()
            merged = [i for i in (primary.value(MERGED_IDS) or "").split(";") if i]
            merged += [i for i in (secondary.value(MERGED_IDS) or "").split(";") if i]
            merged.append(str(secondary.id))
            self.store.update(primary, {MERGED_IDS: ";".join(dict.fromkeys(merged))}, now, "CRM_UI")
            secondary.merged_into, secondary.archived_at, secondary.updated_at = primary.id, now, now
            for other in OBJECT_TYPES.values():
                for to_id, _type_id in self.store.associated(kind.name, secondary.id, other.name):
                    self.store.associate(kind, primary.id, other, to_id, None)
            if self.webhooks is not None:
                self.webhooks.enqueue(kind.singular, "merge", primary.id, occurred_at=now, change_source="CRM_UI",
                                      extra={"primaryObjectId": primary.id, "mergedObjectIds": [secondary.id],
                                             "newObjectId": primary.id})
                self.webhooks.enqueue(kind.singular, "deletion", secondary.id, occurred_at=now,
                                      change_source="CRM_UI")
