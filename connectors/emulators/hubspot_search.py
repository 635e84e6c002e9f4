"""CRM search semantics of the HubSpot emulator: filters, sorts, paging limits.

Pure functions over plain values so that the filter logic can be unit-tested without a server.
The HTTP handler in `hubspot.py` validates the request with `validate_search` and then filters
and sorts the records through `matches` and `sort_key`.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# HubSpot's documented search limits (raised in 2024 to these values).
MAX_SEARCH_LIMIT = 200
MAX_SEARCH_RESULTS = 10_000
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
MAX_IN_VALUES = 100  # IN / NOT_IN take at most 100 values (HubSpot search guide, "Limitations")

OPERATORS = frozenset(
    {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
     "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
)
_VALUELESS = frozenset({"HAS_PROPERTY", "NOT_HAS_PROPERTY"})
_MULTI = frozenset({"IN", "NOT_IN"})
_EPOCH_MS = re.compile(r"-?\d+")
_TOKEN_SPLIT = re.compile(r"[^0-9a-z._+-]+")  # "@" splits too: an email yields local part + domain


class SearchError(ValueError):
    """A request HubSpot would reject with 400 VALIDATION_ERROR."""


@dataclass(frozen=True)
class Sort:
    property_name: str
    descending: bool


# Looks a property's HubSpot type up ("string", "number", "datetime", "date", "enumeration",
# "bool"); the same literal compares differently depending on it.
TypeOf = Callable[[str], str]


def parse_datetime_ms(value: str) -> int | None:
    """Epoch millis of a datetime filter value or stored value: HubSpot accepts both forms."""
    text = value.strip()
    if not text:
        return None
    if _EPOCH_MS.fullmatch(text):
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


# Cached: a search compares every stored value against the filter and sort, and parsing ISO
# datetimes dominated the cost of paging through 10,000+ records.
@functools.lru_cache(maxsize=1 << 16)
def comparable(value: str, prop_type: str) -> tuple[int, Any]:
    """A sortable key for one value: numbers and datetimes numerically, everything else as
    case-insensitive text. The leading int keeps mixed kinds from comparing (TypeError)."""
    if prop_type in ("datetime", "date"):
        millis = parse_datetime_ms(value)
        if millis is not None:
            return (0, millis)
    elif prop_type == "number":
        number = _as_number(value)
        if number is not None:
            return (0, number)
    return (1, value.lower())


def _tokens(value: str) -> list[str]:
    return [token for token in _TOKEN_SPLIT.split(value.lower()) if token]


def _contains_token(stored: str, wanted: str) -> bool:
    wanted = wanted.lower().strip()
    candidates = [stored.lower(), *_tokens(stored)]
    if "*" in wanted:  # HubSpot allows wildcards in CONTAINS_TOKEN values
        return any(fnmatch.fnmatchcase(candidate, wanted) for candidate in candidates)
    return wanted in candidates


def _filter_matches(stored: str | None, flt: Mapping[str, Any], prop_type: str) -> bool:
    operator: str = flt["operator"]
    present = stored is not None and stored != ""
    if operator == "HAS_PROPERTY":
        return present
    if operator == "NOT_HAS_PROPERTY":
        return not present
    if operator in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN") and not present:
        return True  # HubSpot's negative operators also match records without the property
    if not present:
        return False
    assert stored is not None
    here = comparable(stored, prop_type)
    if operator in _MULTI:
        found = any(here == comparable(str(v), prop_type) for v in flt.get("values") or [])
        return found if operator == "IN" else not found
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        found = _contains_token(stored, str(flt["value"]))
        return found if operator == "CONTAINS_TOKEN" else not found
    there = comparable(str(flt["value"]), prop_type)
    if here[0] != there[0]:
        # A numeric property compared to text (or vice versa) never matches, like HubSpot,
        # except NEQ which is trivially true.
        return operator == "NEQ"
    if operator == "BETWEEN":
        high = comparable(str(flt["highValue"]), prop_type)
        return bool(there <= here <= high)
    result = {
        "EQ": here == there,
        "NEQ": here != there,
        "LT": here < there,
        "LTE": here <= there,
        "GT": here > there,
        "GTE": here >= there,
    }[operator]
    return bool(result)


def matches(values: Mapping[str, str], filter_groups: Sequence[Mapping[str, Any]], type_of: TypeOf) -> bool:
    """OR across filter groups, AND within a group; no groups = everything matches."""
    if not filter_groups:
        return True
    return any(
        all(
            _filter_matches(values.get(f["propertyName"]), f, type_of(f["propertyName"]))
            for f in group.get("filters") or []
        )
        for group in filter_groups
    )


def matches_query(values: Mapping[str, str], query: str | None) -> bool:
    """The free-text `query`: every word must prefix-match a token of some property value."""
    if not query:
        return True
    haystack = [token for value in values.values() for token in _tokens(value)]
    return all(any(token.startswith(word) for token in haystack) for word in _tokens(query))


def parse_sorts(raw: Sequence[Any] | None) -> list[Sort]:
    """The Python client types `sorts` as list[str], the REST API documents objects; accept both
    ("createdate", "-createdate", {"propertyName": ..., "direction": "DESCENDING"})."""
    sorts: list[Sort] = []
    for item in raw or []:
        if isinstance(item, str):
            sorts.append(Sort(item.lstrip("-"), item.startswith("-")))
        elif isinstance(item, Mapping) and isinstance(item.get("propertyName"), str):
            direction = str(item.get("direction") or "ASCENDING").upper()
            if direction not in ("ASCENDING", "DESCENDING"):
                raise SearchError(f"Unknown sort direction {direction}")
            sorts.append(Sort(item["propertyName"], direction == "DESCENDING"))
        else:
            raise SearchError(f"Invalid sort {item!r}")
    if len(sorts) > 1:
        raise SearchError("Only one sort is supported")  # HubSpot's search allows a single sort
    return sorts


def scrambled_id(record_id: int) -> int:
    """A fixed pseudo-random rank per id (Knuth's multiplicative hash): a tie order that is stable
    from one request to the next, as paging needs, but has nothing to do with the id."""
    return (record_id * 2_654_435_761) % 2**32


def sort_records(
    rows: list[tuple[int, Mapping[str, str]]], sorts: Sequence[Sort], type_of: TypeOf,
    tie_key: Callable[[int], int] = int,
) -> list[tuple[int, Mapping[str, str]]]:
    """Sort (id, values) rows. Ties (and the unsorted case) fall back to `tie_key(id)`, ascending
    id by default, so paging is stable; rows without the sort property go last in either direction.
    HubSpot documents no tie order, so clients must not depend on it: `scrambled_id` lets tests
    check that they don't."""
    ordered = sorted(rows, key=lambda row: tie_key(row[0]))
    for sort in reversed(sorts):  # stable sorts compose from the least significant key
        prop_type = type_of(sort.property_name)
        with_value = [r for r in ordered if r[1].get(sort.property_name)]
        without = [r for r in ordered if not r[1].get(sort.property_name)]
        # reverse=True keeps equal keys in their prior (ascending id) order: Python's sort
        # stays stable when reversed, which is exactly the tie-break we want.
        with_value.sort(
            key=lambda r: comparable(r[1][sort.property_name], prop_type), reverse=sort.descending
        )
        ordered = with_value + without
    return ordered


@dataclass(frozen=True)
class SearchRequest:
    filter_groups: list[dict[str, Any]]
    sorts: list[Sort]
    properties: list[str] | None
    limit: int
    offset: int
    query: str | None


def validate_search(body: Any, max_results: int = MAX_SEARCH_RESULTS) -> SearchRequest:
    """Turn a search body into a SearchRequest or raise SearchError with HubSpot's reason.
    `max_results` is HubSpot's 10,000 cap; tests lower it to reach it with fewer records."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise SearchError("Invalid input JSON: expected an object")
    limit = body.get("limit", 10)
    if not isinstance(limit, int) or limit < 0:
        raise SearchError(f"limit must be a non-negative integer, got {limit!r}")
    if limit > MAX_SEARCH_LIMIT:
        raise SearchError(f"limit must be less than or equal to {MAX_SEARCH_LIMIT}")
    after = body.get("after")
    try:
        offset = int(after) if after not in (None, "") else 0
    except (TypeError, ValueError):
        raise SearchError(f"Invalid after value {after!r}") from None
    if offset >= max_results:
        # HubSpot refuses to page past the 10,000th result of one query.
        raise SearchError(f"Cannot page beyond {max_results} results; refine the query")
    groups = body.get("filterGroups") or []
    if len(groups) > MAX_FILTER_GROUPS:
        raise SearchError(f"Too many filter groups (max {MAX_FILTER_GROUPS})")
    total = 0
    for group in groups:
        filters = group.get("filters") or []
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise SearchError(f"Too many filters in a group (max {MAX_FILTERS_PER_GROUP})")
        total += len(filters)
        for flt in filters:
            _validate_filter(flt)
    if total > MAX_FILTERS_TOTAL:
        raise SearchError(f"Too many filters (max {MAX_FILTERS_TOTAL})")
    properties = body.get("properties")
    return SearchRequest(
        filter_groups=groups,
        sorts=parse_sorts(body.get("sorts")),
        properties=[str(p) for p in properties] if properties else None,
        limit=limit,
        offset=offset,
        query=body.get("query"),
    )


def _validate_filter(flt: Any) -> None:
    if not isinstance(flt, dict) or not isinstance(flt.get("propertyName"), str):
        raise SearchError("Each filter needs a propertyName")
    operator = flt.get("operator")
    if operator not in OPERATORS:
        raise SearchError(f"Unknown operator {operator!r}")
    if operator in _MULTI:
        if not isinstance(flt.get("values"), list):
            raise SearchError(f"{operator} needs a values list")
        if len(flt["values"]) > MAX_IN_VALUES:
            raise SearchError(f"{operator} takes at most {MAX_IN_VALUES} values")
    elif operator not in _VALUELESS and flt.get("value") is None:
        raise SearchError(f"{operator} needs a value")
    if operator == "BETWEEN" and flt.get("highValue") is None:
        raise SearchError("BETWEEN needs a highValue")
