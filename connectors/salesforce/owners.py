"""Conditional owner changes on Salesforce Leads: one at a time, or many in a few calls.

A person's newer change always wins. One change (`change_owner`): read OwnerId, compare it with the
owner our decision saw, then PATCH with If-Unmodified-Since (the modification time our decision
saw; 1-second precision, hence the read). Many (`change_owners`): the same checks, batched:
1. one sObject Collections retrieve per 2,000 leads (`POST composite/sobjects/Lead` with the ids in
   the body: a GET's URL fits ~800 ids) reads OwnerId and LastModifiedDate;
2. per lead: already the target owner -> done without a write (our own earlier attempt); another
   owner than the one the decision saw, or modified after the decision (compared at the second,
   exactly as the If-Unmodified-Since header would be) -> ConflictError, the person's change stands;
3. the rest in sObject Collections updates of 200 (`PATCH composite/sobjects`, allOrNone false):
   each record succeeds or fails on its own.
sObject Collections cannot carry a per-record condition (no If-Unmodified-Since per record; the
`/composite` subrequests that can take headers hold 25 a call), so the window left is the time
between the retrieve and the update of the same batch: milliseconds, against minutes between a
decision and its dispatch that the read closes. 1,000 owner changes: 1 retrieve + 5 updates.
A replay re-reads first, so a change already written is found done and not written again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from email.utils import format_datetime
from functools import partial
from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceError

from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.collections_api import RECORDS_MAX, RETRYABLE_RECORD_CODES, record_errors, restful
from connectors.salesforce.errors import translate
from connectors.salesforce.mapping import parse_time
from sidecar.ports import ConflictError, OwnerChange, PermanentError, TransientError

RETRIEVE_MAX = 2000  # ids per sObject Collections retrieve
UPDATE_MAX = RECORDS_MAX  # records per sObject Collections update
_FIELDS = ["Id", "OwnerId", "LastModifiedDate"]

Results = dict[str, str | Exception]


def same_id(a: str | None, b: str | None) -> bool:
    # 15- and 18-character forms of one id share the first 15 characters (case-sensitive).
    return bool(a and b and a[:15] == b[:15])


def _since(change: OwnerChange) -> str:
    return format_datetime(change.seen_modified_at.astimezone(UTC), usegmt=True)


def owner_of(client: SalesforceClient, lead_id: str) -> str | None:
    current = client.rest("GET", f"sobjects/Lead/{lead_id}", params={"fields": "OwnerId"})
    owner = current.get("OwnerId") if current else None
    return str(owner) if owner else None


def change_owner(client: SalesforceClient, change: OwnerChange) -> None:
    """Read the owner first and compare it with the owner our decision saw, then PATCH with
    If-Unmodified-Since. The header alone is not enough: HTTP dates have one-second precision,
    so a human change within the second of `seen_modified_at` would pass it and be overwritten."""
    lead_id = change.lead.crm_id
    current = owner_of(client, lead_id)
    if same_id(current, change.to_owner_id):
        return  # our own earlier write, retried (or a human made the same choice)
    if change.from_owner_id is not None and not same_id(current, change.from_owner_id):
        raise ConflictError(f"lead {lead_id} is now owned by {current}, not {change.from_owner_id}: "
                            "changed in Salesforce after our decision, so the reassignment was not made")
    since = _since(change)
    try:
        client.raw(lambda sf: sf.restful(f"sobjects/Lead/{lead_id}", method="PATCH",
                                         json={"OwnerId": change.to_owner_id},
                                         headers={"If-Unmodified-Since": since}))
        return
    except SalesforceError as exc:
        if exc.status != 412:
            raise translate(exc) from exc
    except Exception as exc:
        raise translate(exc) from exc
    owner = owner_of(client, lead_id)
    if same_id(owner, change.to_owner_id):
        return  # our own earlier write, retried: the lead already has the owner we wanted
    raise ConflictError(f"lead {lead_id} changed in Salesforce after {since}; it is now owned by "
                        f"{owner}, so the reassignment was not made")


def change_owners(client: SalesforceClient, items: Sequence[tuple[OwnerChange, str]]) -> Results:
    """`BatchOwnerWriter`: per key "owner:<id>" or that change's own error. Raises only when the
    read failed as a whole (nothing was written)."""
    wanted: dict[str, OwnerChange] = {}
    for change, key in items:
        wanted.setdefault(key, change)  # one key, one change: the first request for it counts
    if not wanted:
        return {}
    current = _read(client, list(dict.fromkeys(change.lead.crm_id for change in wanted.values())))
    results: Results = {}
    todo: list[tuple[str, OwnerChange]] = []
    for key, change in wanted.items():
        verdict = _judge(change, current.get(change.lead.crm_id[:15]))
        if verdict is None:
            todo.append((key, change))
        else:
            results[key] = verdict
    _write(client, todo, results)
    return results


def _read(client: SalesforceClient, lead_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The current row of each lead still there, by its 15-character id."""
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(lead_ids), RETRIEVE_MAX):
        body = {"ids": list(lead_ids[start:start + RETRIEVE_MAX]), "fields": _FIELDS}
        try:
            answers = client.raw(partial(restful, "composite/sobjects/Lead", "POST", body, client.timeout))
        except (SalesforceError, requests.RequestException) as exc:
            raise translate(exc) from exc
        for row in answers or []:
            if isinstance(row, dict) and row.get("Id"):
                rows[str(row["Id"])[:15]] = row
    return rows


def _judge(change: OwnerChange, row: Mapping[str, Any] | None) -> str | Exception | None:
    """The outcome decided by the read alone, or None when the change is to be written."""
    lead_id, target = change.lead.crm_id, change.to_owner_id
    if row is None:  # the retrieve answers null for a deleted (or merged away) record
        return PermanentError(f"lead {lead_id} is no longer in Salesforce (deleted or merged): the reassignment "
                              "was not made")
    owner = str(row.get("OwnerId") or "") or None
    if same_id(owner, target):
        return f"owner:{target}"  # our own earlier write, retried (or a human made the same choice)
    if change.from_owner_id is not None and not same_id(owner, change.from_owner_id):
        return ConflictError(f"lead {lead_id} is now owned by {owner}, not {change.from_owner_id}: "
                             "changed in Salesforce after our decision, so the reassignment was not made")
    modified = parse_time(row.get("LastModifiedDate"))
    # As If-Unmodified-Since would judge it: HTTP dates have one-second resolution.
    if modified is not None and modified.replace(microsecond=0) > change.seen_modified_at.replace(microsecond=0):
        return ConflictError(f"lead {lead_id} changed in Salesforce after {_since(change)}; it is now owned by "
                             f"{owner}, so the reassignment was not made")
    return None


def _write(client: SalesforceClient, todo: Sequence[tuple[str, OwnerChange]], results: Results) -> None:
    """Updates of 200, each record settling on its own answer. A whole call that fails leaves its
    records, and those not sent yet, with that error (retried: the replay re-reads first)."""
    for start in range(0, len(todo), UPDATE_MAX):
        chunk, leads = [], set()
        for key, change in todo[start:start + UPDATE_MAX]:
            if change.lead.crm_id[:15] in leads:  # a record may appear once per call
                results[key] = TransientError(f"another owner change of lead {change.lead.crm_id} went first")
                continue
            leads.add(change.lead.crm_id[:15])
            chunk.append((key, change))
        if not chunk:
            continue
        body = {"allOrNone": False, "records": [{"attributes": {"type": "Lead"}, "id": change.lead.crm_id,
                                                 "OwnerId": change.to_owner_id} for _key, change in chunk]}
        try:
            answers = client.raw(partial(restful, "composite/sobjects", "PATCH", body, client.timeout))
        except (SalesforceError, requests.RequestException) as exc:
            failure = translate(exc)
            results.update(dict.fromkeys((key for key, _change in todo[start:] if key not in results), failure))
            return
        if not isinstance(answers, list) or len(answers) != len(chunk):
            failure = TransientError(f"Salesforce answered {len(answers or [])} results for {len(chunk)} leads")
            results.update(dict.fromkeys((key for key, _change in chunk), failure))
            continue
        for (key, change), answer in zip(chunk, answers, strict=True):
            results[key] = f"owner:{change.to_owner_id}" if answer.get("success") else _failure(change, answer)


def _failure(change: OwnerChange, answer: Any) -> Exception:
    codes, text = record_errors(answer)
    if codes & RETRYABLE_RECORD_CODES:
        return TransientError(f"Salesforce could not change the owner of lead {change.lead.crm_id} now: {text}")
    return PermanentError(f"Salesforce refused the owner change of lead {change.lead.crm_id}: "
                          f"{text or repr(answer)[:200]}")
