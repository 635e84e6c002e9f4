"""One CRM record that cannot be mapped never costs its page: shared by the CRM readers.

A record with a value the mapping cannot read (a date that is not a date, a required stamp missing)
is set aside with the reason, and the page goes on: the core audits it (`ingest_failed`) and the
cursor still moves, so the records behind it are applied. The next change to the record reads it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from sidecar.domain import LeadSnapshot

log = logging.getLogger(__name__)
Row = TypeVar("Row")


def map_records(rows: Iterable[Row], to_snapshot: Callable[[Row], LeadSnapshot],
                id_of: Callable[[Row], str]) -> tuple[list[LeadSnapshot], dict[str, str]]:
    """(snapshots of the rows that map, {crm id: why} of those that do not)."""
    snapshots: list[LeadSnapshot] = []
    rejected: dict[str, str] = {}
    for row in rows:
        try:
            snapshots.append(to_snapshot(row))
        except (ValueError, TypeError, KeyError, OverflowError) as exc:  # bad data, not a bug in the call
            crm_id = id_of(row)
            rejected[crm_id] = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("could not read CRM record %.40s, set aside: %s", crm_id, type(exc).__name__)
    return snapshots, rejected
