"""What the webhook receivers ignored since the process started, by reason (e.g.
`hubspot.unknown_event_type`, `salesforce.bad_record_id`): shown on /healthz, logged per request.

A receiver skips an event it cannot use instead of refusing the whole delivery, because a refusal
loses the valid events beside it: HubSpot does not retry a 400 and Salesforce drops a message it
could not deliver within 24 hours.
"""

from __future__ import annotations

from collections import Counter

SKIPPED: Counter[str] = Counter()  # the process's own; receivers take another one in tests
