"""Business-hours calendar: how much open time lies between two instants, and when a window ends.

Design notes (why it looks like this):

* All arithmetic is done on integer microseconds since the Unix epoch, so ``elapsed(s, add(s, d)) == d``
  holds exactly -- no floats anywhere.
* Each *local* date is turned once into a tuple of UTC intervals (cached).  Opening hours are wall-clock
  times, so on DST-change days a 08:00-18:00 day is still "08:00 to 18:00 on the clock", and only the
  conversion to UTC differs: an opening is the set of instants whose wall clock reads inside it.
  Every local date owns the UTC span [its first midnight, the next date's first midnight), and its
  openings are clipped to it, so consecutive days never overlap whatever the zone does at midnight.
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
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# With at least one open weekday, only holidays can close days; no real holiday list closes two full
# years in a row, so hitting this means the configuration can never open (e.g. only open on Dec 25).
_MAX_CLOSED_DAYS = 732


class _Day(NamedTuple):
    lo: int  # UTC µs of this local date's start (see _midnight)
    hi: int  # UTC µs of the next local date's start
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


_LOCATED_MAX = 4096  # instants remembered by `_locate` (a few hundred kB at most)


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
        # Unbounded caches: a few hundred bytes per local date touched, i.e. tiny for real SLA ranges.
        # Concurrent use from threads is safe: a race only recomputes the same value.
        self._days: dict[date, _Day] = {}
        self._midnights: dict[date, int] = {}
        # Instants located lately: a burst asks about the same few (the tick's `now`, clocks started
        # together) thousands of times. Bounded: emptied when it grows past _LOCATED_MAX.
        # Keyed by the instant in µs, not the datetime: two aware datetimes in one zone that differ only
        # in `fold` (01:30 EDT and 01:30 EST on fall-back night) compare and hash equal.
        self._located: dict[int, tuple[int, date, _Day]] = {}
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

    def _offset(self, t: int) -> int:
        """UTC offset in µs in force at instant t."""
        off = _from_us(t).astimezone(self._tz).utcoffset()
        return off // _US if off is not None else 0

    def _jump(self, before: int, after: int) -> int:
        """The instant in (before, after] where the offset changes to after's (exactly one change).

        zoneinfo has no public transition API, so bisect; tz transitions fall on whole seconds, so
        bisecting over seconds gives the exact instant in ~17 steps for a one-day bracket.
        """
        target = self._offset(after)
        lo, hi = before // 1_000_000, after // 1_000_000
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._offset(mid * 1_000_000) == target:
                hi = mid
            else:
                lo = mid
        return hi * 1_000_000

    def _midnight(self, d: date) -> int:
        """First instant whose wall clock reads >= 00:00 on d (first occurrence if repeated)."""
        cached = self._midnights.get(d)  # each midnight is both one day's end and the next day's start
        if cached is None:
            local = datetime.combine(d, time(0), tzinfo=self._tz)
            first, second = _to_us(local), _to_us(local.replace(fold=1))
            # In a spring-forward gap fold=0 reads the wall time with the old offset (after the jump) and
            # fold=1 with the new one (before it); the day then starts at the jump itself.
            cached = first if first <= second else self._jump(second, first)
            self._midnights[d] = cached
        return cached

    def _day(self, d: date) -> _Day:
        cached = self._days.get(d)
        if cached is not None:
            return cached
        lo, hi = self._midnight(d), self._midnight(d + _DAY)
        # An opening "09:00-17:00" means: every instant whose wall clock reads inside it.  Within a day
        # wall time is instant + offset, piecewise with at most one DST jump, so map each interval
        # through each piece.  This makes 01:00-03:00 on US spring-forward day one real hour,
        # 01:00-02:00 on fall-back day two, and an opening wholly inside a DST gap empty -- with no
        # fold/ambiguity special cases.
        off_lo, off_hi = self._offset(lo), self._offset(hi - 1)
        if off_lo == off_hi:
            pieces = [(lo, hi, off_lo)]
        else:
            jump = self._jump(lo, hi - 1)
            pieces = [(lo, jump, off_lo), (jump, hi, off_hi)]
        wall0 = (d.toordinal() - _EPOCH_ORDINAL) * 86_400_000_000  # local midnight as naive epoch µs
        closed = d in self._holidays or (self._country is not None and d in self._country)
        raw = sorted(
            (max(p0, wall0 + start * 1_000_000 - off), min(p1, wall0 + end * 1_000_000 - off))
            for start, end in (() if closed else self._week[d.weekday()])
            for p0, p1, off in pieces
        )
        spans: list[tuple[int, int]] = []
        for a, b in raw:
            if b <= a:
                continue  # the interval does not meet this piece (e.g. it lies in the DST gap)
            if spans and a <= spans[-1][1]:  # pieces of one opening that meet at the jump
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
        hit = self._located.get(t)
        if hit is not None:
            return hit
        if len(self._located) >= _LOCATED_MAX:
            self._located.clear()
        d = dt.astimezone(self._tz).date()
        day = self._day(d)
        # Local date and our day span disagree only if a DST fold straddles midnight (23:30 -> back to
        # 23:00 after 00:00; no current tzdata zone does this): the repeated wall times go to day d+1.
        if t < day.lo:
            d -= _DAY
            day = self._day(d)
        elif t >= day.hi:
            d += _DAY
            day = self._day(d)
        self._located[t] = (t, d, day)
        return t, d, day

    # ---- explaining (sidecar.explain) -----------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def is_holiday(self, d: date) -> bool:
        """A local date closed by the holiday list (not merely a weekday without hours)."""
        return d in self._holidays or (self._country is not None and d in self._country)

    def open_intervals(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The open periods between two instants, clipped to them, in UTC: what `elapsed` adds up."""
        s, d, _ = self._locate(start, "start")
        e, last, _ = self._locate(end, "end")
        spans: list[tuple[datetime, datetime]] = []
        while d <= last:
            spans += [(_from_us(max(a, s)), _from_us(min(b, e))) for a, b in self._day(d).spans if b > s and a < e]
            d += _DAY
        return spans

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
