"""SOQL builders: format_soql quoting, size-bounded IN lists, field names checked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.salesforce import queries
from connectors.salesforce.fields import FieldMap


def test_in_lists_are_chunked_under_the_url_budget() -> None:
    ids = [f"00QHp{i:010d}AAA" for i in range(2000)]
    chunks = list(queries.history_for(ids))
    assert len(chunks) == 5
    assert all(queries.encoded_size(q) <= queries.MAX_QUERY_BYTES for q in chunks)
    assert sum(q.count("'00QHp") for q in chunks) == 2000
    assert all("Field IN ('Status','Owner') AND LeadId IN (" in q for q in chunks)


def test_values_are_quoted_and_escaped() -> None:
    since = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert "SystemModstamp >= 2026-11-25T08:00:00+00:00 ORDER BY SystemModstamp, Id" in queries.lead_changes(
        FieldMap(), since
    )
    assert (
        queries.task_by_key("Sidecar_Key__c", "a'b")
        == "SELECT Id FROM Task WHERE Sidecar_Key__c = 'a\\'b' LIMIT 1"
    )
    # Without a key field nothing filters on Description (a Long Text Area): Tasks are read by WhoId.
    [by_lead] = list(queries.tasks_of_leads(["00Q'x"]))
    assert by_lead == "SELECT Id, WhoId, Description FROM Task WHERE WhoId IN ('00Q\\'x')"
    assert "IsClosed = true" in queries.task_stream(FieldMap(), since) and "Status" not in queries.task_stream(
        FieldMap(), since)


def test_field_names_must_be_api_names() -> None:
    with pytest.raises(ValueError, match="not a Salesforce field API name"):
        queries.select_list(["Id", "Name FROM User --"])
