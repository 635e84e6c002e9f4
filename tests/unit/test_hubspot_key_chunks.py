"""The key search packs as many keys as HubSpot's IN filter allows (100 values), and no more."""

from __future__ import annotations

import pytest

from connectors.emulators.hubspot_search import SearchError, validate_search
from connectors.hubspot.creates import SEARCH_VALUES, key_chunks


def test_lower_case_keys_fill_a_search_with_100_values() -> None:
    keys = [f"first-response:{i}" for i in range(250)]
    chunks = key_chunks(keys)
    assert [len(c) for c, _v in chunks] == [100, 100, 50]
    assert [k for c, _v in chunks for k in c] == keys  # every key once, in order
    assert all(values == chunk for chunk, values in chunks)  # no lower-case twin needed


def test_keys_with_capitals_take_two_values_each_and_never_exceed_the_limit() -> None:
    keys = [f"Key-{i}" for i in range(120)] + ["lower-a", "lower-b"]
    chunks = key_chunks(keys)
    assert all(len(values) <= SEARCH_VALUES for _c, values in chunks)
    assert [len(c) for c, _v in chunks] == [50, 50, 22]
    for chunk, values in chunks:
        assert set(values) == set(chunk) | {k.lower() for k in chunk}
    assert [k for c, _v in chunks for k in c] == keys


def test_duplicate_keys_are_searched_once() -> None:
    assert key_chunks(["a", "a", "b"]) == [(["a", "b"], ["a", "b"])]


def test_the_emulator_refuses_an_in_filter_of_more_than_100_values() -> None:
    def body(count: int) -> dict[str, object]:
        return {"filterGroups": [{"filters": [{"propertyName": "k", "operator": "IN",
                                               "values": [str(i) for i in range(count)]}]}]}
    validate_search(body(100))
    with pytest.raises(SearchError, match="at most 100 values"):
        validate_search(body(101))
