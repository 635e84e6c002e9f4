"""The SOQL subset of the Salesforce emulator: parsing, type checks and evaluation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from simple_salesforce.format import format_soql

from connectors.emulators.soql import BoundQuery, SoqlError, bind, to_18, tokenize

SCHEMAS = {
    "Lead": {"Id": "id", "Name": "string", "Status": "picklist", "Email": "email", "OwnerId": "reference",
             "CreatedDate": "datetime", "LastActivityDate": "date", "IsConverted": "boolean",
             "AnnualRevenue": "currency"},
}
ROWS: list[dict[str, Any]] = [
    {"Id": "00QHp0000000001MAA", "Name": "O'Brien", "Status": "Open", "Email": "a@x.io", "OwnerId": "005A",
     "CreatedDate": "2026-01-01T00:00:00.000+0000", "LastActivityDate": "2026-01-05", "IsConverted": False,
     "AnnualRevenue": 10.0},
    {"Id": "00QHp0000000002MAA", "Name": "100%_real", "Status": "Working", "Email": None, "OwnerId": "005B",
     "CreatedDate": "2026-01-02T12:30:00.000+0000", "LastActivityDate": None, "IsConverted": True,
     "AnnualRevenue": None},
    {"Id": "00QHp0000000003MAA", "Name": "alpha", "Status": None, "Email": "c@x.io", "OwnerId": "005A",
     "CreatedDate": "2026-01-03T00:00:00.000+0000", "LastActivityDate": "2026-01-01", "IsConverted": False,
     "AnnualRevenue": 99.5},
]


def run(soql: str) -> list[str]:
    """Ids of the matching rows, in result order."""
    _, rows = bind(soql, SCHEMAS).run(ROWS)
    return [row["Id"][-4:-3] for row in rows]  # "1", "2", "3": the distinguishing digit


def error_of(soql: str) -> SoqlError:
    with pytest.raises(SoqlError) as caught:
        bind(soql, SCHEMAS)
    return caught.value


def test_string_escapes_are_decoded() -> None:
    token = tokenize(r"'a\'b\\c\nd\"e'")[0]
    assert token.kind == "string"
    assert token.value == "a'b\\c\nd\"e"


def test_format_soql_quoting_round_trips() -> None:
    assert run(format_soql("SELECT Id FROM Lead WHERE Name = {}", "O'Brien")) == ["1"]
    assert run(format_soql("SELECT Id FROM Lead WHERE Name = {}", "o'brien")) == ["1"]  # case-insensitive


def test_unknown_escape_is_malformed() -> None:
    assert error_of(r"SELECT Id FROM Lead WHERE Name = 'a\qb'").code == "MALFORMED_QUERY"


def test_unterminated_string_is_malformed() -> None:
    assert error_of("SELECT Id FROM Lead WHERE Name = 'abc").code == "MALFORMED_QUERY"


def test_like_wildcards_and_escapes() -> None:
    assert run("SELECT Id FROM Lead WHERE Name LIKE 'AL%'") == ["3"]
    assert run("SELECT Id FROM Lead WHERE Name LIKE 'alph_'") == ["3"]
    assert run(r"SELECT Id FROM Lead WHERE Name LIKE '100\%\_%'") == ["2"]
    assert run(r"SELECT Id FROM Lead WHERE Name LIKE '1\%%'") == []
    assert run(format_soql("SELECT Id FROM Lead WHERE Name LIKE '{:like}%'", "100%_")) == ["2"]


def test_and_or_mixed_without_parentheses_is_rejected() -> None:
    error = error_of("SELECT Id FROM Lead WHERE Status = 'Open' AND Name = 'x' OR Name = 'alpha'")
    assert error.code == "MALFORMED_QUERY"
    assert "unexpected token: 'OR'" in error.message
    assert run("SELECT Id FROM Lead WHERE (Status = 'Open' AND Name = 'x') OR Name = 'alpha'") == ["3"]


def test_not_and_not_in_keep_null_rows() -> None:
    assert run("SELECT Id FROM Lead WHERE Status NOT IN ('Open')") == ["2", "3"]
    assert run("SELECT Id FROM Lead WHERE Status != 'Open'") == ["2", "3"]
    assert run("SELECT Id FROM Lead WHERE NOT (Status = 'Open' OR Status = 'Working')") == ["3"]
    assert run("SELECT Id FROM Lead WHERE Status IN ('open', null)") == ["1", "3"]


def test_null_is_neither_smaller_nor_greater() -> None:
    assert run("SELECT Id FROM Lead WHERE AnnualRevenue < 50") == ["1"]
    assert run("SELECT Id FROM Lead WHERE AnnualRevenue >= 10") == ["1", "3"]
    assert run("SELECT Id FROM Lead WHERE AnnualRevenue = null") == ["2"]
    assert run("SELECT Id FROM Lead WHERE Email != null") == ["1", "3"]


def test_booleans_and_numbers() -> None:
    assert run("SELECT Id FROM Lead WHERE IsConverted = true") == ["2"]
    assert run("SELECT Id FROM Lead WHERE IsConverted = FALSE AND AnnualRevenue > 10") == ["3"]


def test_datetime_literals_in_every_offset_form() -> None:
    assert run("SELECT Id FROM Lead WHERE CreatedDate > 2026-01-02T00:00:00Z") == ["2", "3"]
    assert run("SELECT Id FROM Lead WHERE CreatedDate = 2026-01-02T12:30:00.000+0000") == ["2"]
    # 14:30 at +02:00 is 12:30 UTC
    assert run("SELECT Id FROM Lead WHERE CreatedDate = 2026-01-02T14:30:00+02:00") == ["2"]
    moment = datetime(2026, 1, 2, 18, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))  # 12:30 UTC
    assert run(format_soql("SELECT Id FROM Lead WHERE CreatedDate <= {}", moment)) == ["1", "2"]


def test_date_literals_on_date_fields() -> None:
    assert run(format_soql("SELECT Id FROM Lead WHERE LastActivityDate > {}", date(2026, 1, 2))) == ["1"]


def test_literal_types_must_match_the_field() -> None:
    quoted = error_of("SELECT Id FROM Lead WHERE CreatedDate > '2026-01-01T00:00:00Z'")
    assert quoted.code == "INVALID_FIELD"
    assert "must be of type dateTime" in quoted.message
    assert error_of("SELECT Id FROM Lead WHERE CreatedDate > 2026-01-01").code == "INVALID_FIELD"
    assert error_of("SELECT Id FROM Lead WHERE Name = 5").code == "INVALID_FIELD"
    assert error_of("SELECT Id FROM Lead WHERE IsConverted = 'true'").code == "INVALID_FIELD"
    assert error_of("SELECT Id FROM Lead WHERE CreatedDate LIKE 'x'").code == "INVALID_FIELD"


def test_unknown_column_names_entity_and_position() -> None:
    error = error_of("SELECT Id, Foo FROM Lead")
    assert error.code == "INVALID_FIELD"
    assert "No such column 'Foo' on entity 'Lead'" in error.message
    assert "Row:1:Column:12" in error.message
    assert error_of("SELECT Id FROM Lead WHERE Bar = 1").code == "INVALID_FIELD"
    assert error_of("SELECT Id FROM Lead ORDER BY Baz").code == "INVALID_FIELD"


def test_unknown_sobject_and_malformed_queries() -> None:
    assert error_of("SELECT Id FROM Contact").code == "INVALID_TYPE"
    assert error_of("SELECT Id FROM Lead WHERE").code == "MALFORMED_QUERY"
    assert error_of("SELECT Id FROM Lead LIMIT 5 garbage").code == "MALFORMED_QUERY"
    assert error_of("SELECT Id, id FROM Lead").code == "MALFORMED_QUERY"  # duplicate field
    assert error_of("SELECT Id FROM Lead OFFSET 2001").code == "NUMBER_OUTSIDE_VALID_RANGE"


def test_order_by_multiple_keys_and_null_placement() -> None:
    # Salesforce puts nulls first by default, in both directions.
    assert run("SELECT Id FROM Lead ORDER BY Status") == ["3", "1", "2"]
    assert run("SELECT Id FROM Lead ORDER BY Status DESC") == ["3", "2", "1"]
    assert run("SELECT Id FROM Lead ORDER BY Status DESC NULLS LAST") == ["2", "1", "3"]
    assert run("SELECT Id FROM Lead ORDER BY OwnerId ASC, CreatedDate DESC") == ["3", "1", "2"]
    # Text sorts case-insensitively: "alpha" < "O'Brien"
    assert run("SELECT Id FROM Lead WHERE Name != '100%_real' ORDER BY Name") == ["3", "1"]


def test_limit_offset_and_count() -> None:
    assert run("SELECT Id FROM Lead ORDER BY CreatedDate LIMIT 2 OFFSET 1") == ["2", "3"]
    bound = bind("SELECT COUNT() FROM Lead WHERE OwnerId = '005A'", SCHEMAS)
    assert bound.run(ROWS) == (2, [])


def test_field_names_are_case_insensitive_and_projected_canonically() -> None:
    bound: BoundQuery = bind("select id, NAME from lead where status = 'Open'", SCHEMAS)
    _, rows = bound.run(ROWS)
    assert [bound.project(row) for row in rows] == [{"Id": "00QHp0000000001MAA", "Name": "O'Brien"}]


def test_fifteen_character_ids_match_their_eighteen_character_form() -> None:
    assert to_18("00QHp0000000002") == "00QHp0000000002MAA"
    assert to_18("00qhp0000000002") != to_18("00QHp0000000002")
    assert run("SELECT Id FROM Lead WHERE Id = '00QHp0000000002'") == ["2"]


def test_datetime_values_compare_as_instants_not_strings() -> None:
    rows = [{"Id": "00QHp000000000AMAA", "CreatedDate": datetime(2026, 1, 1, 23, tzinfo=UTC).isoformat()}]
    bound = bind("SELECT Id FROM Lead WHERE CreatedDate > 2026-01-02T00:00:00+02:00", SCHEMAS)
    assert bound.run(rows)[0] == 1  # 23:00Z is after 22:00Z
