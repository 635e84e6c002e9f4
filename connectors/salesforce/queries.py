"""Every SOQL statement the connector sends, built with `format_soql` only.

Values (ids, datetimes, picklist values) always go through format_soql's quoting. Field names come
from the field map; they are checked to be plain API names before they are spliced in as
`{:literal}`, the one place where format_soql does not quote.

IN lists are chunked by size, not only by count: a REST query travels in the URL and Salesforce
caps URI plus headers at 16,384 bytes (431/414 beyond), so 2,000 ids (about 54 KB URL-encoded)
never fit in one GET. We keep each encoded query under `MAX_QUERY_BYTES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from urllib.parse import urlencode

from simple_salesforce.format import format_soql

from connectors.salesforce.fields import FieldMap
from sidecar.ports import FIRST_RESPONSE_TASK_PREFIX

MAX_QUERY_BYTES = 12_000  # leaves room for headers within Salesforce's 16,384-byte request line+headers
MAX_IDS = 2000
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
HISTORY_FIELDS = ("Status", "Owner")  # LeadHistory.Field values for Status and OwnerId changes


def select_list(names: Sequence[str]) -> str:
    bad = [n for n in names if not _API_NAME.match(n)]
    if bad:
        raise ValueError(f"not a Salesforce field API name: {', '.join(bad)}")
    return ", ".join(dict.fromkeys(names))


def encoded_size(soql: str) -> int:
    return len(urlencode({"q": soql}))


def chunked(template: str, ids: Sequence[str], *args: object, max_bytes: int = MAX_QUERY_BYTES,
            max_ids: int = MAX_IDS) -> Iterator[str]:
    """`template` has one `{ids}` placeholder (formatted with format_soql's IN list) plus the
    positional `{}` values in `args`; yields queries covering all `ids` within the size budget."""
    if not ids:
        return
    base = encoded_size(format_soql(template, *args, ids=["x"])) - encoded_size("'x'")
    per_id = encoded_size(format_soql("{}", [ids[0]])) - encoded_size("()") + encoded_size(",") - 2
    room = max(1, min(max_ids, (max_bytes - base) // max(per_id, 1)))
    for start in range(0, len(ids), room):
        yield format_soql(template, *args, ids=list(ids[start:start + room]))


def lead_changes(fields: FieldMap, since: datetime | None) -> str:
    columns = select_list(fields.lead_fields())
    if since is None:
        return format_soql("SELECT {:literal} FROM Lead ORDER BY SystemModstamp, Id", columns)
    return format_soql("SELECT {:literal} FROM Lead WHERE SystemModstamp >= {} ORDER BY SystemModstamp, Id",
                       columns, since)


def lead_range(fields: FieldMap, start: datetime, end: datetime) -> str:
    """Leads stamped in [start, end): the late commits a poll looks for behind its cursor."""
    return format_soql("SELECT {:literal} FROM Lead WHERE SystemModstamp >= {} AND SystemModstamp < {} "
                       "ORDER BY SystemModstamp, Id", select_list(fields.lead_fields()), start, end)


def lead_range_count(start: datetime, end: datetime) -> str:
    return format_soql("SELECT COUNT() FROM Lead WHERE SystemModstamp >= {} AND SystemModstamp < {}", start, end)


def lead_count(since: datetime | None) -> str:
    """Sizes a backfill (REST only: Bulk API 2.0 refuses aggregate functions)."""
    if since is None:
        return "SELECT COUNT() FROM Lead"
    return format_soql("SELECT COUNT() FROM Lead WHERE SystemModstamp >= {}", since)


def lead_bulk(fields: FieldMap, since: datetime | None) -> str:
    """lead_changes without ORDER BY: Bulk API 2.0 returns rows in no particular order anyway, and
    ORDER BY turns off its PK chunking (slower, prone to query timeouts); the caller sorts."""
    columns = select_list(fields.lead_fields())
    if since is None:
        return format_soql("SELECT {:literal} FROM Lead", columns)
    return format_soql("SELECT {:literal} FROM Lead WHERE SystemModstamp >= {}", columns, since)


def leads_by_id(fields: FieldMap, ids: Sequence[str]) -> Iterator[str]:
    columns = select_list(fields.lead_fields())
    return chunked("SELECT {:literal} FROM Lead WHERE Id IN {ids}", ids, columns)


def _task_filter(fields: FieldMap) -> str:
    # IsClosed, not Status = 'Completed': which Status values close a task is configured per org.
    if fields.key_field:
        # Also the sidecar's own first-response tasks (subtype Task), known by their key's prefix.
        return format_soql("IsClosed = true AND WhoId != null AND (TaskSubtype IN {} OR {:literal} LIKE '{:like}%')",
                           sorted(fields.task_kinds), fields.key_field, FIRST_RESPONSE_TASK_PREFIX)
    return format_soql("IsClosed = true AND TaskSubtype IN {} AND WhoId != null", sorted(fields.task_kinds))


def task_stream(fields: FieldMap, since: datetime) -> str:
    """Completed progress tasks changed since `since`: their leads are re-read even when the
    Lead row itself did not change (a Task does not move the Lead's SystemModstamp)."""
    return format_soql("SELECT {:literal} FROM Task WHERE {:literal} AND SystemModstamp >= {} "
                       "ORDER BY SystemModstamp, Id", select_list(fields.task_fields()), _task_filter(fields),
                       since)


def tasks_all(fields: FieldMap) -> str:
    return format_soql("SELECT {:literal} FROM Task WHERE {:literal}", select_list(fields.task_fields()),
                       _task_filter(fields))


def tasks_for(fields: FieldMap, lead_ids: Sequence[str]) -> Iterator[str]:
    return chunked("SELECT {:literal} FROM Task WHERE {:literal} AND WhoId IN {ids}", lead_ids,
                   select_list(fields.task_fields()), _task_filter(fields))


EVENT_COLUMNS = "Id, WhoId, EndDateTime, OwnerId"
EVENT_STREAM_COLUMNS = "Id, WhoId, EndDateTime, OwnerId, SystemModstamp"


def event_stream(ended_after: datetime, changed_since: datetime, now: datetime) -> str:
    """Events that ended in (ended_after, now], or were changed since `changed_since` and have ended
    (a meeting logged after the fact): the meetings a poll announces without a Lead change."""
    return format_soql("SELECT {:literal} FROM Event WHERE WhoId != null AND EndDateTime <= {} AND "
                       "(EndDateTime > {} OR SystemModstamp >= {}) ORDER BY SystemModstamp, Id",
                       EVENT_STREAM_COLUMNS, now, ended_after, changed_since)


def events_all(now: datetime) -> str:
    return format_soql("SELECT {:literal} FROM Event WHERE WhoId != null AND EndDateTime <= {}",
                       EVENT_COLUMNS, now)


def events_for(lead_ids: Sequence[str], now: datetime) -> Iterator[str]:
    return chunked("SELECT {:literal} FROM Event WHERE EndDateTime <= {} AND WhoId IN {ids}", lead_ids,
                   EVENT_COLUMNS, now)


HISTORY_COLUMNS = "LeadId, Field, CreatedDate"


def history_all() -> str:
    return format_soql("SELECT {:literal} FROM LeadHistory WHERE Field IN {}", HISTORY_COLUMNS,
                       list(HISTORY_FIELDS))


def history_for(lead_ids: Sequence[str]) -> Iterator[str]:
    return chunked("SELECT {:literal} FROM LeadHistory WHERE Field IN {} AND LeadId IN {ids}", lead_ids,
                   HISTORY_COLUMNS, list(HISTORY_FIELDS))


def users_query(fields: FieldMap) -> str:
    return format_soql("SELECT {:literal} FROM User ORDER BY Id", select_list(fields.user_fields()))


def task_by_key(key_field: str, key: str) -> str:
    """Our earlier task for this idempotency key, by the key field."""
    return format_soql("SELECT Id FROM Task WHERE {:literal} = {} LIMIT 1", select_list([key_field]), key)


def tasks_by_keys(key_field: str, keys: Sequence[str]) -> Iterator[str]:
    return chunked("SELECT Id, {:literal} FROM Task WHERE {:literal} IN {ids}", keys,
                   select_list([key_field]), select_list([key_field]))


def tasks_of_leads(lead_ids: Sequence[str]) -> Iterator[str]:
    """Without a key field: every Task on these leads with its Description, where the caller looks
    for the `[sidecar:<key>]` marker. Description is a Long Text Area, which SOQL can select but
    not filter ("can not be filtered in query call"), so the match happens in Python; WhoId is a
    lookup (indexed), so this stays cheap however large the org's Task table is."""
    return chunked("SELECT Id, WhoId, Description FROM Task WHERE WhoId IN {ids}", lead_ids)


def marker(key: str) -> str:
    return f"[sidecar:{key}]"
