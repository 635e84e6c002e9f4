"""Tokens of the SOQL subset (see soql.py), plus the id and datetime forms both sides of the
emulator share. Kept apart from the parser so each module stays readable on its own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

Literal = str | int | float | bool | date | datetime | None

# LIKE escapes (\% and \_) must survive decoding as "not a wildcard": park them on private-use code
# points until the pattern is turned into a regex (or back into plain text for `=`).
LITERAL_PERCENT, LITERAL_UNDERSCORE = "\ue000", "\ue001"
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f",
            "%": LITERAL_PERCENT, "_": LITERAL_UNDERSCORE}
_KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC",
                       "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE"})


class SoqlError(Exception):
    """A query Salesforce would reject; `code` is the REST errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def to_18(record_id: str) -> str:
    """The case-insensitive 18-character form of a 15-character id (suffix encodes the upper-case
    letters of each 5-character chunk), so both forms of an id find the same record."""
    if len(record_id) != 15:
        return record_id
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in range(3):
        part = record_id[chunk * 5 : chunk * 5 + 5]
        bits = sum(1 << i for i, char in enumerate(part) if "A" <= char <= "Z")
        suffix += alphabet[bits]
    return record_id + suffix


def parse_sf_datetime(text: str) -> datetime:
    """Parse 2026-01-01T00:00:00Z, ...+00:00 and Salesforce's own ...00.000+0000."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"datetime without offset: {text!r}")
    return value


@dataclass(frozen=True)
class Token:
    kind: str  # ident, keyword, string, number, datetime, date, op, "(", ")", ",", eof
    text: str
    pos: int
    value: Literal = None


_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))"
    r"|(?P<date>\d{4}-\d{2}-\d{2})"
    r"|(?P<number>[+-]?\d+(?:\.\d+)?)"
    r"|(?P<op>!=|<>|<=|>=|=|<|>)"
    r"|(?P<punct>[(),])"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_.]*(?::\d+)?)"
)


def location(soql: str, pos: int) -> str:
    row = soql.count("\n", 0, pos) + 1
    column = pos - (soql.rfind("\n", 0, pos) + 1) + 1
    line = soql.splitlines()[row - 1] if soql else ""
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n"


def tokenize(soql: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(soql):
        if soql[pos] == "'":
            pos = _read_string(soql, pos, tokens)
            continue
        match = _TOKEN_RE.match(soql, pos)
        if match is None:
            raise SoqlError("MALFORMED_QUERY", f"{location(soql, pos)}unexpected token: '{soql[pos]}'")
        kind, text = match.lastgroup or "", match.group()
        if kind == "datetime":
            tokens.append(Token(kind, text, pos, parse_sf_datetime(text)))
        elif kind == "date":
            tokens.append(Token(kind, text, pos, date.fromisoformat(text)))
        elif kind == "number":
            tokens.append(Token(kind, text, pos, float(text) if "." in text else int(text)))
        elif kind == "ident" and text.upper() in _KEYWORDS:
            tokens.append(Token("keyword", text.upper(), pos))
        elif kind == "punct":
            tokens.append(Token(text, text, pos))
        elif kind != "ws":
            tokens.append(Token(kind, text, pos))
        pos = match.end()
    tokens.append(Token("eof", "<EOF>", len(soql)))
    return tokens


def _read_string(soql: str, start: int, tokens: list[Token]) -> int:
    out: list[str] = []
    pos = start + 1
    while pos < len(soql):
        char = soql[pos]
        if char == "'":
            tokens.append(Token("string", soql[start : pos + 1], start, "".join(out)))
            return pos + 1
        if char == "\\":
            escaped = soql[pos + 1 : pos + 2]
            if escaped not in _ESCAPES:
                where = location(soql, pos)
                raise SoqlError("MALFORMED_QUERY", f"{where}Invalid string literal '{soql[start:]}'. "
                                f"Illegal character sequence '\\{escaped}' in string literal.")
            out.append(_ESCAPES[escaped])
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise SoqlError("MALFORMED_QUERY", f"{location(soql, start)}unexpected token: '{soql[start:]}'")
