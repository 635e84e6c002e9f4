"""Business-hours calendar: how much open time lies between two instants, and when a window ends.

Design notes (why it looks like this):

* All arithmetic is done on integer microseconds since the Unix epoch, so ``elapsed(s, add(s, d)) == d``
  holds exactly -- no floats anywhere.
* Each *local* date is turned once into a tuple of UTC intervals (cached).  Opening hours are wall-clock
  times, so on DST-change days a 08:00-18:00 day is still "08:00 to 18:00 on the clock", and only the
  conversion to UTC differs.  Every local date owns the UTC span [local midnight, next local midnight);
  intervals are clipped to it so consecutive days never overlap, whatever the zone does at midnight.
* Long windows skip whole days (and whole Monday-aligned weeks) using cached totals instead of walking
  intervals, so a 30-business-day ``add`` is a few dozen dict look-ups.  Weekly totals are not assumed
  constant: DST days and holidays change them, so they are summed from real (cached) days.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

__all__ = ["BusinessCalendar"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
# With at least one open weekday, only holidays can close days; no real holiday list closes two full
# years in a row, so hitting this means the configuration can never open (e.g. only open on Dec 25).
_MAX_CLOSED_DAYS = 732


class _Day(NamedTuple):
    lo: int  # UTC µs of this local date's midnight (fold=0)
    hi: int  # UTC µs of the next local midnight
    spans: tuple[tuple[int, int], ...]  # sorted, disjoint, half-open [start, end) in UTC µs
    total: int  # open µs in the day


def _to_us(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _parse_hhmm(text: str) -> int | None:
    """Seconds since local midnight for "HH:MM" (00:00..24:00), or None if malformed."""
    m = _HHMM.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        return None
    h, mi = int(m.group(1)), int(m.group(2))
    if mi > 59 or h > 24 or (h == 24 and mi != 0):
        return None
    return h * 3600 + mi * 60


def _expand_key(key: str) -> list[int] | None:
    """'mon' -> [0]; 'mon-fri' -> [0..4]; wrap-around ranges like 'sun-thu' are allowed."""
    parts = [p.strip() for p in str(key).lower().split("-")]
    if len(parts) not in (1, 2) or any(p not in _WEEKDAYS for p in parts):
        return None
    a, b = _WEEKDAYS.index(parts[0]), _WEEKDAYS.index(parts[-1])
    return [(a + i) % 7 for i in range((b - a) % 7 + 1)]


class BusinessCalendar:
    def __init__(
        self,
        tz: str,
        hours: Mapping[str, Sequence[tuple[str, str]]],
        holidays: Iterable[date] = (),
        country: str | None = None,
        subdiv: str | None = None,
    ) -> None:
        errors: list[str] = []
        try:
            self._tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            errors.append(f"unknown timezone {tz!r}")
            self._tz = ZoneInfo("UTC")
        self._week = self._parse_hours(hours, errors)
        if not errors and not any(self._week):
            errors.append("no open hours in the week")
        self._country: Any = None
        if country is not None:
            try:
                # expand=True makes `date in obj` populate that year on first use: lazy, cached by holidays.
                self._country = holidays_lib.country_holidays(country, subdiv=subdiv, years=(), expand=True)
            except NotImplementedError as exc:
                errors.append(f"unknown holiday country/subdivision {country!r}/{subdiv!r}: {exc}")
        elif subdiv is not None:
            errors.append("subdiv given without country")
        if errors:
            raise ValueError("invalid BusinessCalendar: " + "; ".join(errors))
        self._holidays = frozenset(holidays)
        self._days: dict[date, _Day] = {}
        self._weeks: dict[date, int] = {}

    @staticmethod
    def _parse_hours(
        hours: Mapping[str, Sequence[tuple[str, str]]], errors: list[str]
    ) -> tuple[tuple[tuple[int, int], ...], ...]:
        week: list[list[tuple[int, int]] | None] = [None] * 7
        for key, intervals in hours.items():
            days = _expand_key(key)
            if days is None:
                errors.append(f"unknown weekday key {key!r} (use mon..sun or a range like mon-fri)")
                continue
            parsed: list[tuple[int, int, str]] = []
            for iv in intervals:
                if len(iv) != 2:
                    errors.append(f"{key}: interval {iv!r} is not a (start, end) pair")
                    continue
                start, end = _parse_hhmm(iv[0]), _parse_hhmm(iv[1])
                if start is None or end is None:
                    errors.append(f"{key}: bad time in {tuple(iv)!r} (expected HH:MM, 00:00-24:00)")
                elif end <= start:
                    errors.append(f"{key}: interval {iv[0]}-{iv[1]} ends at or before its start")
                else:
                    parsed.append((start, end, f"{iv[0]}-{iv[1]}"))
            parsed.sort()
            merged: list[tuple[int, int]] = []
            for i, (start, end, label) in enumerate(parsed):
                if merged and start < merged[-1][1]:
                    errors.append(f"{key}: overlapping intervals {parsed[i - 1][2]} and {label}")
                elif merged and start == merged[-1][1]:
                    merged[-1] = (merged[-1][0], end)  # touching intervals: one continuous opening
                else:
                    merged.append((start, end))
            for d in days:
                if week[d] is not None:
                    errors.append(f"weekday {_WEEKDAYS[d]!r} is configured more than once")
                week[d] = merged
        return tuple(tuple(w or ()) for w in week)

    # ---- per-day construction -------------------------------------------------------------------

    def _wall_to_us(self, d: date, secs: int, is_end: bool) -> int:
        """UTC µs for wall time `secs` after local midnight of `d` (secs may be 86400 = 24:00).

        An opening "start-end" covers exactly the instants whose wall clock reads inside [start, end):
        an ambiguous wall time (fall back) maps to its first occurrence as a start and its second as an
        end; a nonexistent one (spring forward) maps to the transition instant, the first instant whose
        clock reads later than it.  So 01:00-03:00 on a US spring-forward day is 1 hour, 01:00-02:00 on
        fall-back day is 2 hours, and an opening wholly inside the gap is empty.
        """
        # Timedelta addition on an aware datetime is wall-clock arithmetic, so 24:00 becomes next 00:00.
        first = datetime.combine(d, time(0), tzinfo=self._tz) + timedelta(seconds=secs)
        second = first.replace(fold=1)
        off0, off1 = first.utcoffset(), second.utcoffset()
        if off0 is None or off1 is None or off0 == off1:
            return _to_us(first)
        if off0 > off1:  # ambiguous
            return _to_us(second if is_end else first)
        # Nonexistent: fold=1 reads it with the new offset (an instant before the jump), fold=0 with the old
        # one (after it).  Bisect for the jump; tz transitions fall on whole seconds, so this is exact.
        lo, hi = _to_us(second) // 1_000_000, _to_us(first) // 1_000_000
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _from_us(mid * 1_000_000).astimezone(self._tz).utcoffset() == off1:
                hi = mid
            else:
                lo = mid
        return hi * 1_000_000

    def _day(self, d: date) -> _Day:
        cached = self._days.get(d)
        if cached is not None:
            return cached
        lo, hi = self._wall_to_us(d, 0, False), self._wall_to_us(d + _DAY, 0, False)
        spans: list[tuple[int, int]] = []
        closed = d in self._holidays or (self._country is not None and d in self._country)
        for start, end in () if closed else self._week[d.weekday()]:
            a = max(lo, self._wall_to_us(d, start, False))
            b = min(hi, self._wall_to_us(d, end, True))
            if b <= a:
                continue  # opening lies entirely in a DST gap
            if spans and a <= spans[-1][1]:  # can only happen around an ambiguous hour
                spans[-1] = (spans[-1][0], max(b, spans[-1][1]))
            else:
                spans.append((a, b))
        day = _Day(lo, hi, tuple(spans), sum(b - a for a, b in spans))
        self._days[d] = day
        return day

    def _week_total(self, monday: date) -> int:
        total = self._weeks.get(monday)
        if total is None:
            total = sum(self._day(monday + timedelta(days=i)).total for i in range(7))
            self._weeks[monday] = total
        return total

    def _locate(self, dt: datetime, what: str) -> tuple[int, date, _Day]:
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"{what} must be a timezone-aware datetime, got naive {dt!r}")
        t = _to_us(dt)
        d = dt.astimezone(self._tz).date()
        day = self._day(d)
        # Local date and our midnight-to-midnight span can disagree only if midnight falls in a DST gap.
        if t < day.lo:
            d -= _DAY
            day = self._day(d)
        elif t >= day.hi:
            d += _DAY
            day = self._day(d)
        return t, d, day

    # ---- public API -----------------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        t, _, day = self._locate(at, "at")
        return any(a <= t < b for a, b in day.spans)

    def next_open(self, at: datetime) -> datetime:
        t, d, day = self._locate(at, "at")
        for _ in range(_MAX_CLOSED_DAYS):
            for a, b in day.spans:
                if t < b:
                    return _from_us(max(a, t))
            d += _DAY
            day = self._day(d)
        raise ValueError(f"calendar has no open time within {_MAX_CLOSED_DAYS} days of {at.isoformat()}")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        s, ds, day_s = self._locate(start, "start")
        e, de, day_e = self._locate(end, "end")
        if e <= s:
            return timedelta(0)
        if ds == de:
            return timedelta(microseconds=sum(max(0, min(b, e) - max(a, s)) for a, b in day_s.spans))
        total = sum(max(0, b - max(a, s)) for a, b in day_s.spans)
        total += sum(max(0, min(b, e) - a) for a, b in day_e.spans)
        d = ds + _DAY
        while d < de:  # whole days strictly between: cached totals, whole weeks when aligned
            if d.weekday() == 0 and d + _WEEK <= de:
                total += self._week_total(d)
                d += _WEEK
            else:
                total += self._day(d).total
                d += _DAY
        return timedelta(microseconds=total)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """Earliest instant t >= start with elapsed(start, t) == duration.

        Because it is the *earliest* such instant, a window that is used up exactly at closing time ends
        at the closing instant (not at the next opening), and add(s, 0) == s even when s is closed.
        """
        if duration < timedelta(0):
            raise ValueError(f"duration must be >= 0, got {duration!r}")
        t, d, day = self._locate(start, "start")
        left = duration // _US
        if left == 0:
            return start.astimezone(UTC)
        closed_days = 0
        while True:
            if t > day.lo:  # partial first day: walk its intervals from t
                spans = [(max(a, t), b) for a, b in day.spans if b > t]
                avail = sum(b - a for a, b in spans)
            else:
                spans, avail = list(day.spans), day.total
            if left <= avail:
                for a, b in spans:
                    if left <= b - a:
                        return _from_us(a + left)
                    left -= b - a
            left -= avail
            closed_days = closed_days + 1 if avail == 0 else 0
            if closed_days > _MAX_CLOSED_DAYS:
                raise ValueError(f"calendar has no open time for {_MAX_CLOSED_DAYS} days after {start}")
            d += _DAY
            # Strictly greater: a window ending exactly at a week's last close must end inside that week.
            while d.weekday() == 0 and left > (wk := self._week_total(d)) > 0:
                left -= wk
                d += _WEEK
            day = self._day(d)
            t = day.lo
