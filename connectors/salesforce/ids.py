"""Salesforce record ids by shape: 15 case-sensitive alphanumeric characters, or those 15 plus a
3-character suffix that encodes which of them are upper case (Salesforce's "18-character id").
The first three characters name the object type (key prefix): Lead 00Q, Organization 00D.

Checked at the Outbound Message receiver, so that what reaches the intake is always an id the
reader can put into a query: an Account id, a SOQL fragment or a 10,000-character string is not.
"""

from __future__ import annotations

import re

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_SHAPE = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Z]{3})?", re.ASCII)
LEAD_PREFIX = "00Q"
ORG_PREFIX = "00D"


def checksum(id15: str) -> str:
    """The 3-character suffix of a 15-character id: per 5-character chunk, a bit per upper-case letter."""
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, char in enumerate(id15[start:start + 5]) if "A" <= char <= "Z")
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def is_record_id(value: object, prefix: str | None = None) -> bool:
    """A 15- or 18-character id (the 18-character one with its correct suffix), of `prefix`'s type."""
    if not isinstance(value, str) or _SHAPE.fullmatch(value) is None:
        return False
    if prefix is not None and not value.startswith(prefix):
        return False
    return len(value) == 15 or value[15:] == checksum(value[:15])


def to_18(record_id: str) -> str:
    """The 18-character form; ValueError for anything that is not a well-formed id."""
    if not is_record_id(record_id):
        raise ValueError(f"{record_id!r} is not a Salesforce id (15 or 18 letters and digits)")
    return record_id if len(record_id) == 18 else record_id + checksum(record_id)
