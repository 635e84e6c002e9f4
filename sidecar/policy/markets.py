"""Business time in the policy: markets (time zone, open hours, holidays) and window durations
("45m", "4h", "5bd"), which only mean something against a market's calendar."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated

import holidays as holidays_pkg
from pydantic import AfterValidator, Field, field_validator

from sidecar.calendar import BusinessCalendar
from sidecar.policy.base import Strict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|h|bd)\s*$")


def check_duration(text: str) -> str:
    match = DURATION_PATTERN.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a window; write minutes, hours or business days like '45m', '4h', '5bd'"
        )
    if float(match.group(1)) <= 0:
        raise ValueError(f"window {text!r} must be greater than zero")
    return text.strip()


Duration = Annotated[str, AfterValidator(check_duration)]


def duration_seconds(text: str, business_day: timedelta) -> int:
    """Business seconds of a window; 'bd' counts the market's average open day."""
    match = DURATION_PATTERN.match(text)
    assert match, text  # validated on load
    amount, unit = float(match.group(1)), match.group(2)
    if unit == "m":
        return round(amount * 60)
    if unit == "h":
        return round(amount * 3600)
    return round(amount * business_day.total_seconds())


class Holidays(Strict):
    country: str | None = None
    subdiv: str | None = None
    extra: list[date] = Field(default_factory=list)

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None and value not in holidays_pkg.list_supported_countries():
            raise ValueError(f"unknown holiday country {value!r}; use an ISO code such as US, IN, DE")
        return value


class Market(Strict):
    tz: str
    hours: dict[str, list[str]]
    holidays: Holidays = Holidays()

    def intervals(self) -> dict[str, list[tuple[str, str]]]:
        """Hours as the calendar wants them: day or day range -> [(start, end)]."""
        return {days: [_span(text) for text in spans] for days, spans in self.hours.items()}

    def business_day(self) -> timedelta:
        """Average open time of an open weekday: what one 'bd' of a window means here."""
        open_days, total = 0, 0
        for days, spans in self.intervals().items():
            first, _, last = days.partition("-")
            count = (WEEKDAYS.index(last or first) - WEEKDAYS.index(first)) % 7 + 1
            seconds = sum(_seconds(end) - _seconds(start) for start, end in spans)
            open_days += count if seconds else 0
            total += count * seconds
        return timedelta(seconds=total / max(open_days, 1))

    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar(self.tz, self.intervals(), self.holidays.extra,
                                self.holidays.country, self.holidays.subdiv)


def _seconds(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    return int(hours) * 3600 + int(minutes) * 60


def _span(text: str) -> tuple[str, str]:
    start, _, end = text.partition("-")
    return start.strip(), end.strip()
