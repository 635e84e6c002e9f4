"""The subset of SOQL the sidecar sends, parsed and evaluated the way Salesforce does.

Deliberately strict where Salesforce is strict (unknown columns, quoted datetimes, AND/OR mixed
without parentheses), so that a query that passes here has a good chance of passing in a real org.
Not supported: relationship paths (Owner.Name), date literals such as TODAY or LAST_N_DAYS:n,
aggregate functions other than COUNT(), GROUP BY, sub-queries, INCLUDES/EXCLUDES.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from connectors.emulators.soql_lexer import (
    LITERAL_PERCENT,
    LITERAL_UNDERSCORE,
    Literal,
    SoqlError,
    Token,
    location,
    parse_sf_datetime,
    to_18,
    tokenize,
)

__all__ = ["BoundQuery", "Literal", "Query", "SoqlError", "bind", "parse", "parse_sf_datetime", "sort_key",
           "to_18", "tokenize"]

# Field types, as `describe` names them, grouped by how values compare.
TEXT_TYPES = frozenset({"string", "picklist", "email", "phone", "textarea", "url", "combobox", "textarea_long"})
# Long Text Area (e.g. Task.Description): selectable, but SOQL refuses it in WHERE and ORDER BY.
UNFILTERABLE_TYPES = frozenset({"textarea_long"})
ID_TYPES = frozenset({"id", "reference"})  # case-sensitive: 00Qa... and 00QA... are different rows
NUMBER_TYPES = frozenset({"double", "int", "currency", "percent"})
_MAX_OFFSET = 2000
_INVALID_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field "
    "name. Please reference your WSDL or the describe call for the appropriate names."
)


@dataclass(frozen=True)
class FieldRef:
    name: str
    pos: int


@dataclass(frozen=True)
class Compare:
    field: FieldRef
    op: str  # = != < > <= >= like in "not in"
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND, OR, NOT
    items: tuple[Condition, ...]


Condition = Compare | BoolOp


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_last: bool = False  # Salesforce sorts nulls first unless told otherwise, whatever the direction


@dataclass
class Query:
    sobject: str
    fields: list[FieldRef]  # empty for COUNT()
    count_only: bool = False
    where: Condition | None = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


class _Parser:
    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.tokens = tokenize(soql)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def error(self, token: Token | None = None) -> SoqlError:
        token = token or self.current
        where = location(self.soql, token.pos)
        return SoqlError("MALFORMED_QUERY", f"{where}unexpected token: '{token.text}'")

    def take(self, kind: str, text: str | None = None) -> Token:
        token = self.current
        if token.kind != kind or (text is not None and token.text != text):
            raise self.error()
        self.index += 1
        return token

    def accept(self, keyword: str) -> bool:
        if self.current.kind == "keyword" and self.current.text == keyword:
            self.index += 1
            return True
        return False

    def parse(self) -> Query:
        self.take("keyword", "SELECT")
        fields: list[FieldRef] = []
        count_only = False
        if self.current.kind == "ident" and self.current.text.upper() == "COUNT":
            self.index += 1
            self.take("(")
            self.take(")")
            count_only = True
        else:
            fields.append(self.field())
            while self.current.kind == ",":
                self.index += 1
                fields.append(self.field())
        self.take("keyword", "FROM")
        query = Query(self.take("ident").text, fields, count_only)
        if self.accept("WHERE"):
            query.where = self.condition()
        if self.accept("ORDER"):
            self.take("keyword", "BY")
            query.order_by.append(self.order_item())
            while self.current.kind == ",":
                self.index += 1
                query.order_by.append(self.order_item())
        if self.accept("LIMIT"):
            query.limit = self.integer()
        if self.accept("OFFSET"):
            query.offset = self.integer()
            if query.offset > _MAX_OFFSET:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {_MAX_OFFSET}")
        if self.current.kind != "eof":
            raise self.error()
        return query

    def field(self) -> FieldRef:
        token = self.take("ident")
        return FieldRef(token.text, token.pos)

    def integer(self) -> int:
        token = self.take("number")
        if not isinstance(token.value, int) or token.value < 0:
            raise self.error(token)
        return token.value

    def order_item(self) -> OrderItem:
        ref = self.field()
        descending = self.accept("DESC")
        if not descending:
            self.accept("ASC")
        nulls_last = False
        if self.accept("NULLS"):
            nulls_last = self.accept("LAST")
            if not nulls_last:
                self.take("keyword", "FIRST")
        return OrderItem(ref, descending, nulls_last)

    def condition(self) -> Condition:
        # SOQL refuses `a AND b OR c`: one operator per level, parentheses for the rest.
        items = [self.unary()]
        joiner: str | None = None
        while self.current.kind == "keyword" and self.current.text in ("AND", "OR"):
            if joiner is not None and self.current.text != joiner:
                raise self.error()
            joiner = self.current.text
            self.index += 1
            items.append(self.unary())
        return items[0] if joiner is None else BoolOp(joiner, tuple(items))

    def unary(self) -> Condition:
        if self.accept("NOT"):
            return BoolOp("NOT", (self.unary(),))
        if self.current.kind == "(":
            self.index += 1
            inner = self.condition()
            self.take(")")
            return inner
        ref = self.field()
        if self.accept("NOT"):
            self.take("keyword", "IN")
            return Compare(ref, "not in", self.value_list())
        if self.accept("IN"):
            return Compare(ref, "in", self.value_list())
        if self.accept("LIKE"):
            return Compare(ref, "like", self.take("string").value)
        op = self.take("op").text
        return Compare(ref, "!=" if op == "<>" else op, self.literal())

    def value_list(self) -> tuple[Literal, ...]:
        self.take("(")
        values = [self.literal()]
        while self.current.kind == ",":
            self.index += 1
            values.append(self.literal())
        self.take(")")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.current
        self.index += 1
        if token.kind in ("string", "number", "datetime", "date"):
            return token.value
        if token.kind == "keyword" and token.text in ("NULL", "TRUE", "FALSE"):
            return {"NULL": None, "TRUE": True, "FALSE": False}[token.text]
        raise self.error(token)


def parse(soql: str) -> Query:
    return _Parser(soql).parse()


# --- binding to a schema and evaluating -------------------------------------------------------------


def _type_error(name: str, ftype: str, value: Literal) -> SoqlError:
    expectation = {
        "datetime": "must be of type dateTime and should not be enclosed in quotes",
        "date": "must be of type date and should not be enclosed in quotes",
        "boolean": "must be of type boolean and should not be enclosed in quotes",
    }.get(ftype, "must be of type double and should not be enclosed in quotes"
          if ftype in NUMBER_TYPES else "must be of type string and should be enclosed in quotes")
    message = f"value of filter criterion for field '{name}' {expectation} ({value!r})"
    return SoqlError("INVALID_FIELD", message)


def _accepts(ftype: str, value: Literal) -> bool:
    if value is None:
        return True
    if ftype == "datetime":
        return isinstance(value, datetime)
    if ftype == "date":
        return isinstance(value, date) and not isinstance(value, datetime)
    if ftype == "boolean":
        return isinstance(value, bool)
    if ftype in NUMBER_TYPES:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def sort_key(ftype: str, value: Any) -> Any:
    """Comparable form of a stored value (datetimes are stored as Salesforce strings)."""
    if value is None:
        return None
    if ftype == "datetime":
        return value if isinstance(value, datetime) else parse_sf_datetime(str(value))
    if ftype == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    if ftype in TEXT_TYPES:  # SOQL text comparison and ordering are case-insensitive
        return str(value).replace(LITERAL_PERCENT, "%").replace(LITERAL_UNDERSCORE, "_").casefold()
    if ftype in NUMBER_TYPES:
        return float(value)
    if ftype in ID_TYPES:
        return to_18(str(value))
    return value


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        parts.append({"%": ".*", "_": ".", LITERAL_PERCENT: "%", LITERAL_UNDERSCORE: "_"}.get(char)
                     or re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _row_key(name: str, ftype: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: sort_key(ftype, row[name])


@dataclass
class BoundQuery:
    """A parsed query checked against one sObject's fields (canonical names resolved)."""

    query: Query
    sobject: str
    types: dict[str, str]  # canonical field name -> type
    names: dict[str, str]  # lower-cased name -> canonical name
    select: list[str]

    def matches(self, record: Mapping[str, Any], condition: Condition | None = None) -> bool:
        condition = condition if condition is not None else self.query.where
        if condition is None:
            return True
        if isinstance(condition, BoolOp):
            if condition.op == "NOT":
                return not self.matches(record, condition.items[0])
            results = (self.matches(record, item) for item in condition.items)
            return all(results) if condition.op == "AND" else any(results)
        name = self.names[condition.field.name.lower()]
        ftype = self.types[name]
        actual = sort_key(ftype, record.get(name))
        if condition.op in ("in", "not in"):
            assert isinstance(condition.value, tuple)
            found = actual in {sort_key(ftype, v) for v in condition.value}
            return found if condition.op == "in" else not found
        if condition.op == "like":
            return actual is not None and bool(_like_regex(str(condition.value)).fullmatch(str(record[name])))
        expected = sort_key(ftype, condition.value)
        if condition.op == "=":
            return bool(actual == expected)
        if condition.op == "!=":
            return bool(actual != expected)
        if actual is None or expected is None:  # null is neither smaller nor greater than anything
            return False
        return bool({"<": actual < expected, ">": actual > expected,
                     "<=": actual <= expected, ">=": actual >= expected}[condition.op])

    def project(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {name: record.get(name) for name in self.select}

    def run(self, records: Iterable[Mapping[str, Any]]) -> tuple[int, list[Mapping[str, Any]]]:
        """Returns (totalSize, matching records in order, not projected); no rows for COUNT()."""
        rows = [r for r in records if self.matches(r)]
        for item in reversed(self.query.order_by):  # stable sorts, least significant key first
            name = self.names[item.field.name.lower()]
            ftype = self.types[name]
            nulls = [r for r in rows if r.get(name) is None]
            values = sorted((r for r in rows if r.get(name) is not None),
                            key=_row_key(name, ftype), reverse=item.descending)
            rows = values + nulls if item.nulls_last else nulls + values
        rows = rows[self.query.offset :]
        if self.query.limit is not None:
            rows = rows[: self.query.limit]
        if self.query.count_only:
            return len(rows), []
        return len(rows), rows


def bind(soql: str, schemas: Mapping[str, Mapping[str, str]]) -> BoundQuery:
    """Parse `soql` and check it against `schemas` (sObject name -> field name -> type)."""
    query = parse(soql)
    sobjects = {name.lower(): name for name in schemas}
    sobject = sobjects.get(query.sobject.lower())
    if sobject is None:
        raise SoqlError("INVALID_TYPE", f"{location(soql, soql.find(query.sobject))}sObject type "
                        f"'{query.sobject}' is not supported. {_INVALID_FIELD_HINT}")
    types = dict(schemas[sobject])
    names = {name.lower(): name for name in types}

    def resolve(ref: FieldRef) -> str:
        name = names.get(ref.name.lower())
        if name is None:
            raise SoqlError("INVALID_FIELD", f"{location(soql, ref.pos)}No such column '{ref.name}' on "
                            f"entity '{sobject}'. {_INVALID_FIELD_HINT}")
        return name

    select = [resolve(ref) for ref in query.fields]
    seen: set[str] = set()
    for name in select:
        if name in seen:
            raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {name}")
        seen.add(name)
    for item in query.order_by:
        name = resolve(item.field)
        if types[name] in UNFILTERABLE_TYPES:
            raise SoqlError("INVALID_FIELD", f"{location(soql, item.field.pos)}field '{name}' can not be "
                            "sorted in a query call")

    def check(condition: Condition | None) -> None:
        if isinstance(condition, BoolOp):
            for item in condition.items:
                check(item)
        elif isinstance(condition, Compare):
            name = resolve(condition.field)
            ftype = types[name]
            if ftype in UNFILTERABLE_TYPES:
                raise SoqlError("INVALID_FIELD", f"{location(soql, condition.field.pos)}field '{name}' can not "
                                "be filtered in query call")
            values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
            if condition.op == "like" and ftype not in TEXT_TYPES | ID_TYPES:
                raise SoqlError("INVALID_FIELD", f"invalid operator on field '{name}': LIKE")
            for value in values:
                if not _accepts(ftype, value):
                    raise _type_error(name, ftype, value)

    check(query.where)
    return BoundQuery(query, sobject, types, names, select)
