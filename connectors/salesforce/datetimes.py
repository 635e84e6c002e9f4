"""The one way the connector writes a dateTime field value to Salesforce.

Salesforce's REST API documents `yyyy-MM-ddTHH:mm:ss.SSSZ` (or `...SSS+/-HH:mm`) with at most three
fractional digits ("Valid Date and DateTime Formats", developer.salesforce.com/docs/atlas.en-us.
api_rest.meta/api_rest/intro_valid_date_formats.htm). Python's `isoformat()` writes microseconds
(`.123456+00:00`) whenever the value has any, which the API does not document and our emulator
refuses. Date fields take `yyyy-MM-dd` (`date.isoformat()`), and SOQL literals are built by
`format_soql` in the SOQL format (`YYYY-MM-DDThh:mm:ss+hh:mm`, no fraction; queries.py).
"""

from __future__ import annotations

from datetime import UTC, datetime


def api_datetime(moment: datetime) -> str:
    """`moment` in UTC as `yyyy-MM-ddTHH:mm:ss.SSSZ` (milliseconds truncated, never rounded up)."""
    if moment.tzinfo is None:
        raise ValueError("aware datetimes only: a naive time would be read as UTC by Salesforce")
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
