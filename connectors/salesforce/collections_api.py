"""sObject Collections: the call and its per-record answers, as tasks, notes and owner changes use them.

A Collections create, upsert or update (`allOrNone` false) answers one result per record, in order;
a failed record carries `errors` with a `statusCode`. Some codes mean "not now" (another transaction
held the lead's lock, a server busy): those records are retried, the others are refused for good.
"""

from __future__ import annotations

from typing import Any

from simple_salesforce.api import Salesforce

RECORDS_MAX = 200  # records per sObject Collections create, upsert or update
# Per-record failures worth retrying (another transaction held the lead's lock, and the like).
RETRYABLE_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"})


def restful(path: str, method: str, body: Any, timeout: float, sf: Salesforce) -> Any:
    """One REST call with a JSON body (a `partial` of it is what `SalesforceClient.raw` runs)."""
    return sf.restful(path, method=method, json=body, timeout=timeout)


def record_errors(answer: Any) -> tuple[set[str], str]:
    """The error codes of one failed per-record result, and a line that names them with their messages."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    items = [e for e in errors or [] if isinstance(e, dict)]
    codes = {str(e.get("statusCode") or e.get("errorCode") or "") for e in items}
    text = "; ".join(f"{e.get('statusCode') or e.get('errorCode')}: {e.get('message')}" for e in items)
    return codes, text
