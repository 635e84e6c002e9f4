"""Tick cost vs. number of open clocks: the indexed `next_due_at` tick against a naive scan-all.

For each size N, the store holds N open clocks of which exactly 100 are due. We time:
- tick: `sidecar.engine.evaluator.tick` (selects `next_due_at <= now` via the index, fires 100 steps);
- naive: what a scan-all evaluator does: load every open clock and compute its used business time
  to find the due ones (the decisions themselves are not even made).
Prints a table and writes scripts/results/bench_evaluator.json.

    python scripts/bench_evaluator.py [--sizes 1000,10000,100000,1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from sidecar.engine import clocks
from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.policy import load_policy
from sidecar.policy.version import record_version
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday, US-East business hours
DUE = 100
STARTED = NOW - timedelta(minutes=27)
FIRST_DUE = STARTED + timedelta(minutes=24)  # 80 % of the due clocks' 30-minute window


def populate(url: str, size: int) -> tuple[str, list[int]]:
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        version = record_version(session, load_policy(ROOT / "config/policy.example.yaml"), "bench",
                                 NOW - timedelta(days=30)).version
    started = STARTED
    chunk = 20_000
    with engine.begin() as connection:
        for first in range(0, size, chunk):
            ids = range(first, min(size, first + chunk))
            connection.execute(insert(Lead), [
                {"id": i + 1, "crm": "salesforce", "crm_id": f"00Q{i:012d}", "name": f"Lead {i}",
                 "company": "Acme", "email": "", "market": "US-East", "source": "web_form", "intent": "mid",
                 "state": "NEW", "crm_status": "Open - Not Contacted", "owner_id": None, "team_id": None,
                 "flags": [], "state_entered_at": started, "crm_modified_at": started} for i in ids])
            # All but the first DUE clocks are due far in the future.
            connection.execute(insert(Clock), [
                {"id": i + 1, "lead_id": i + 1, "kind": "sla", "state": "NEW", "rule_id": "new.default",
                 "policy_version": version, "market": "US-East", "window_s": 1800 if i < DUE else 4 * 3600,
                 "started_at": started,
                 "consumed_s": 0.0, "running_since": started, "steps_fired": 0,
                 "next_due_at": FIRST_DUE if i < DUE else NOW + timedelta(days=1 + i % 20),
                 "status": "open"} for i in ids])
    engine.dispose()
    return version, list(range(1, DUE + 1))


def reset_due(sessions, due_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        session.execute(delete(OutboxRow))
        session.execute(delete(AuditRow))
        session.execute(update(Clock).where(Clock.id.in_(due_ids)).values(
            steps_fired=0, next_due_at=FIRST_DUE, status="open"))


def naive_scan(sessions, book: PolicyBook) -> int:  # type: ignore[no-untyped-def]
    due = 0
    with transaction(sessions) as session:
        for clock in session.scalars(select(Clock).where(Clock.status == "open")):
            policy = book.get(session, clock.policy_version)
            target = policy.ladder[clock.steps_fired].at * clock.window_s
            if clocks.used_seconds(clock, book, session, NOW) >= target:
                due += 1
    return due


def measure(size: int, repeats: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        started = time.perf_counter()
        _version, due_ids = populate(url, size)
        populate_s = time.perf_counter() - started
        engine = make_engine(url)
        sessions = session_factory(engine)
        ctx = EngineContext(PolicyBook(), RecordLinks())
        tick_times, naive_times = [], []
        for _ in range(repeats):
            reset_due(sessions, due_ids)
            t0 = time.perf_counter()
            fired = tick(sessions, ctx, NOW)
            tick_times.append(time.perf_counter() - t0)
            assert sum(fired.values()) == DUE, fired
        reset_due(sessions, due_ids)
        for _ in range(min(repeats, 2 if size >= 1_000_000 else repeats)):
            t0 = time.perf_counter()
            found = naive_scan(sessions, ctx.book)
            naive_times.append(time.perf_counter() - t0)
            assert found == DUE, found
        engine.dispose()
    tick_ms, naive_ms = statistics.median(tick_times) * 1000, statistics.median(naive_times) * 1000
    return {"open_clocks": size, "due": DUE, "tick_ms": round(tick_ms, 1), "naive_ms": round(naive_ms, 1),
            "speedup": round(naive_ms / tick_ms, 1), "populate_s": round(populate_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    print(f"{'open clocks':>12} {'due':>5} {'tick ms':>9} {'naive ms':>10} {'speedup':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.repeats)
        rows.append(row)
        print(f"{row['open_clocks']:>12,} {row['due']:>5} {row['tick_ms']:>9} {row['naive_ms']:>10} "
              f"{row['speedup']:>7}x")
    flat = rows[-1]["tick_ms"] / next(r["tick_ms"] for r in rows if r["open_clocks"] >= 10_000) \
        if any(r["open_clocks"] >= 10_000 for r in rows) else None
    result = {"benchmark": "evaluator tick vs naive scan", "database": "sqlite (file, WAL)",
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "rows": rows, "tick_growth_from_10k_to_largest": flat}
    out = ROOT / "scripts/results/bench_evaluator.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"tick growth from 10k to largest: {flat}x; written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
