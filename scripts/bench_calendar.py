"""Micro-benchmark for sidecar.calendar.BusinessCalendar.

Times `add` for 1h / 1 business day / 30 business days and `elapsed` over 30 calendar days on three
calendars, from random (seeded) start instants spread over 2026-2027.  "warm" runs reuse one calendar
(per-day cache filling up, as in the long-running sidecar); "cold" builds a fresh calendar for every
call, so each call pays for building its days and loading holiday years.

Usage: python scripts/bench_calendar.py [--reps N] [--cold-reps N]
Writes scripts/results/bench_calendar.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sidecar.calendar import BusinessCalendar

RESULTS = Path(__file__).resolve().parent / "results" / "bench_calendar.json"

# name -> (constructor kwargs, business-day length)
CALENDARS: dict[str, tuple[dict[str, object], timedelta]] = {
    "IN split, Asia/Kolkata, IN hol.": (
        {
            "tz": "Asia/Kolkata",
            "hours": {"mon-sat": [("10:00", "14:00"), ("15:00", "19:00")]},
            "country": "IN",
        },
        timedelta(hours=8),
    ),
    "US-East, America/New_York, US-NY hol.": (
        {
            "tz": "America/New_York",
            "hours": {"mon-fri": [("08:00", "18:00")]},
            "country": "US",
            "subdiv": "NY",
        },
        timedelta(hours=10),
    ),
    "DACH split, Europe/Berlin, DE-BY hol. + Dec 24/31": (
        {
            "tz": "Europe/Berlin",
            "hours": {"mon-fri": [("08:00", "12:30"), ("13:00", "18:00")]},
            "holidays": [date(y, 12, d) for y in (2026, 2027, 2028) for d in (24, 31)],
            "country": "DE",
            "subdiv": "BY",
        },
        timedelta(hours=9, minutes=30),
    ),
}


Case = Callable[[BusinessCalendar, datetime], object]


def make_cases(day: timedelta) -> dict[str, Case]:
    return {
        "add 1h": lambda c, s: c.add(s, timedelta(hours=1)),
        "add 1 business day": lambda c, s: c.add(s, day),
        "add 30 business days": lambda c, s: c.add(s, 30 * day),
        "elapsed 30 days": lambda c, s: c.elapsed(s, s + timedelta(days=30)),
    }


def starts(n: int, seed: int) -> list[datetime]:
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    span_us = 2 * 365 * 86_400 * 10**6
    return [base + timedelta(microseconds=rng.randrange(span_us)) for _ in range(n)]


def time_calls(cal: BusinessCalendar, fn: Case, inputs: list[datetime]) -> list[float]:
    out: list[float] = []
    for s in inputs:
        t0 = time.perf_counter()
        fn(cal, s)
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def summarize(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "mean_us": statistics.fmean(ordered),
        "p50_us": ordered[len(ordered) // 2],
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_us": ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20_000, help="warm calls per case")
    parser.add_argument("--cold-reps", type=int, default=300, help="cold (fresh calendar) calls per case")
    args = parser.parse_args()

    rows: list[dict[str, object]] = []
    for name, (kwargs, day_len) in CALENDARS.items():
        warm_cal = BusinessCalendar(**kwargs)  # type: ignore[arg-type]
        for i, (case, fn) in enumerate(make_cases(day_len).items()):
            inputs = starts(args.reps, seed=i)
            warm = time_calls(warm_cal, fn, inputs)
            cold: list[float] = []
            for s in starts(args.cold_reps, seed=100 + i):
                cold.extend(time_calls(BusinessCalendar(**kwargs), fn, [s]))  # type: ignore[arg-type]
            rows.append({"calendar": name, "case": case, "warm": summarize(warm), "cold": summarize(cold)})

    table = Table(title="BusinessCalendar timings (µs per call)")
    for col in ("calendar", "case", "warm mean", "warm p50", "warm p99", "cold mean", "cold p99"):
        table.add_column(col, justify="left" if col in ("calendar", "case") else "right")
    for row in rows:
        w, c = row["warm"], row["cold"]
        assert isinstance(w, dict) and isinstance(c, dict)
        table.add_row(
            str(row["calendar"]),
            str(row["case"]),
            f"{w['mean_us']:.1f}",
            f"{w['p50_us']:.1f}",
            f"{w['p99_us']:.1f}",
            f"{c['mean_us']:.0f}",
            f"{c['p99_us']:.0f}",
        )
    Console(width=160).print(table)

    machine = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": sys.version,
        "holidays": version("holidays"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "generated_at": datetime.now(UTC).isoformat(),
        "reps": args.reps,
        "cold_reps": args.cold_reps,
        "machine": machine,
        "results": rows,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
