"""Burst throughput: N steps due at the same instant (09:00 Monday across one market).

One instance, in process: the store holds N open leads in US-East whose next ladder step is due
at 09:00 New York on Monday; the tick decides them all (audit rows + outbox rows), then the
dispatcher sends every effect to the loopback Slack and HubSpot emulators (through the real
connectors). Measured: steps decided per second (the tick alone), and the time until the last
effect is dispatched (counted from 09:00, i.e. tick + dispatch). On SQLite and on PostgreSQL.

The warning mix (step 1: the 80 % warning to the owner) is the Monday-morning wave; the breach mix
(step 2: manager channel + a CRM note on the record) adds a CRM write per step (`--mix breach`).
The noise limit per recipient is lifted so that every message goes out at 09:00 (otherwise most
warnings wait 15 minutes for a digest, on purpose); warnings to one owner in one dispatch batch
still go out as one digest, as in production.

    python scripts/bench_burst.py                     # SQLite and PostgreSQL, 20,000 steps
    python scripts/bench_burst.py --db sqlite --steps 5000 --profile   # pyinstrument of the tick

PostgreSQL: SIDECAR_BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:55480/h_perf);
its public schema is dropped and recreated. Writes scripts/results/bench_burst.json (the scripts/bench_common.py
schema: rows of every label kept, targets from the newest `after` rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.slack import SlackEmulator
from scripts.bench_common import kept_rows, load_text, machine, print_table, target, write
from scripts.bench_support import RESULTS, Planned, bench_policy, build_org, insert_leads
from sidecar import jobs
from sidecar.engine.evaluator import tick
from sidecar.store.db import session_factory, transaction
from sidecar.store.models import AuditRow, OutboxRow

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 New York
PG_URL = os.environ.get("SIDECAR_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:55480/h_perf")
MIX_STEP = {"warning": 0, "breach": 1}


class FixedClock:
    """The emulators' and connectors' clock: 09:00 Monday throughout (no Slack per-channel pacing)."""

    def now(self) -> datetime:
        return NOW

    def epoch(self) -> float:
        return NOW.timestamp()


def run(db: str, steps: int, mix: str, profile: bool) -> dict[str, Any]:
    clock = FixedClock()
    slack, hubspot = SlackEmulator(1, clock.now), HubSpotEmulator(1, clock.now, per_ten_seconds=10**9)
    slack.start()
    hubspot.start()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/burst.db" if db == "sqlite" else PG_URL
        try:
            org = build_org(url, bench_policy(max_per_recipient=10**6), NOW.replace(month=10), clock.now,
                            hubspot, slack)
            step = MIX_STEP[mix]
            started = time.perf_counter()
            insert_leads(org, hubspot if step else None, (Planned("US-East", NOW, step) for _ in range(steps)))
            populate_s = time.perf_counter() - started
            sessions = session_factory(org.engine)
            rt = org.demo.runtime(sessions, clock, None, None, hubspot, slack, 1)
            profiler = _profiler() if profile else None
            t0, cpu0 = time.perf_counter(), time.process_time()
            fired = tick(sessions, rt.ctx, NOW)
            decide_s, decide_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
            if profiler is not None:
                profiler.stop()
                (RESULTS / f"profile_burst_{db}.txt").write_text(profiler.output_text(unicode=False, color=False))
            dispatched: Counter[str] = Counter()
            calls_before = len(slack.export())
            while True:
                outcome = jobs.dispatch(rt, NOW)
                dispatched.update(outcome)
                if not outcome:
                    break
            dispatch_s = time.perf_counter() - t0 - decide_s
            with transaction(sessions) as session:
                audit_rows = session.scalar(select(func.count()).select_from(AuditRow)) or 0
                by_status = {status: n for status, n in session.execute(
                    select(OutboxRow.status, func.count()).group_by(OutboxRow.status))}
            decided = sum(count for kind, count in fired.items() if kind.startswith("sla_"))
            assert decided == steps, fired  # every due step decided once
            return {"db": db, "mix": mix, "steps": steps, "decided": decided, "audit_rows": audit_rows,
                    "decide_s": round(decide_s, 2), "steps_per_s": round(decided / decide_s),
                    # this process's CPU time: on a shared, loaded machine the fairer figure
                    "decide_cpu_s": round(decide_cpu_s, 2), "steps_per_cpu_s": round(decided / decide_cpu_s),
                    "last_effect_dispatched_s": round(decide_s + dispatch_s, 2),
                    "dispatch_s": round(dispatch_s, 2), "effects": by_status,
                    "slack_messages": len(slack.export()) - calls_before, "populate_s": round(populate_s, 1)}
        finally:
            hubspot.stop()
            slack.stop()


def _profiler() -> Any:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002)
    profiler.start()
    return profiler


TARGET_STEPS_PER_S = 5000
KEY = ("label", "db", "mix", "steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--mix", choices=sorted(MIX_STEP), default="warning")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the tick; text in scripts/results/")
    parser.add_argument("--label", default="after",
                        help="this run's label in the JSON rows (e.g. before / after / after-<commit>); the "
                             "targets read the newest `after` or `after-<commit>` rows")
    args = parser.parse_args()
    info = machine()
    rows = []
    for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        row = run(db, args.steps, args.mix, args.profile)
        rows.append({"label": args.label, **row, "effects": _effects(row["effects"]),
                     "load_at_start": load_text(info), "started_at": info["started_at"], "machine": info})
    print(f"burst: {args.steps} {args.mix} steps due at once; {info['cpus']} CPUs ({info['cpu_model']}), "
          f"load {info['load_average_at_start']}")
    print_table(["db", "decided", "decide s", "steps/s", "steps/cpu-s", "dispatch s", "last effect s",
                 "slack msgs", "effects"],
                [[r["db"], r["decided"], r["decide_s"], r["steps_per_s"], r["steps_per_cpu_s"], r["dispatch_s"],
                  r["last_effect_dispatched_s"], r["slack_messages"], r["effects"]] for r in rows])
    kept = kept_rows("bench_burst", rows, KEY)
    write("bench_burst", {"benchmark": "burst throughput: steps due at the same instant", "machine": info,
                          "targets": targets_for(kept), "rows": kept, "notes": NOTES})


def _effects(by_status: dict[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(by_status.items()))


def _is_after(label: object) -> bool:
    """`after`, or `after-<commit>`: a run of the current code (older `after` rows stay for comparison)."""
    return isinstance(label, str) and (label == "after" or label.startswith("after-"))


def targets_for(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per database, from its newest `after` / `after-<commit>` row of the warning mix (the largest burst)."""
    targets = []
    for db, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        runs = [r for r in rows if _is_after(r.get("label")) and r.get("db") == db and r.get("mix") == "warning"]
        if not runs:
            targets.append(target(f"steps decided per second ({name})", f">= {TARGET_STEPS_PER_S:,} per instance",
                                  "not measured", None, "no `after` run on this database in the results"))
            continue
        row = max(runs, key=lambda r: (r["steps"], r.get("started_at") or ""))
        rate, per_cpu = row["steps_per_s"], row["steps_per_cpu_s"]
        met = rate >= TARGET_STEPS_PER_S
        why = "" if met else (
            f"{TARGET_STEPS_PER_S / rate:.1f}x too slow on the wall clock ({per_cpu:,} steps per CPU-second of "
            f"the sidecar; load average {row['load_at_start']} at start on a shared 2-core machine, so it also "
            f"waited for the CPU and, on PostgreSQL, for the server). What is left per step is CPU in Python, "
            f"spread thin (see notes, third pass): reading the ORM-loaded clock, lead and reps (about a hundred "
            f"instrumented attribute reads a step), the notification built and serialised to its payload, the "
            f"clock planned on the business calendar three times (elapsed, breach, next step), and the bind "
            f"processing of the batch's Core INSERTs; the database round trips are per batch of 200")
        targets.append(target(f"steps decided per second, {row['steps']:,} {row['mix']} steps due at once ({name})",
                              f">= {TARGET_STEPS_PER_S:,} per instance", f"{rate:,} steps/s", met, why,
                              value=rate, limit=TARGET_STEPS_PER_S, better="higher"))
        targets.append(target(f"time until the last effect is dispatched, {row['steps']:,} steps ({name})",
                              "as short as the CRMs' and Slack's batch sizes allow (no threshold)",
                              f"{row['last_effect_dispatched_s']} s (decide {row['decide_s']} s + dispatch "
                              f"{row['dispatch_s']} s; {row['slack_messages']:,} Slack messages, effects "
                              f"{row['effects']})", None,
                              "warnings to one owner in one dispatch batch go out as one digest; the "
                              "dispatch (sidecar/outbox.py: claims of 50, a settle per effect) is most of it, "
                              "outside this benchmark's engine changes"))
    return targets


NOTES = [
    "Rows labelled `before` are main before issue 16's engine changes (e4c07c8), "
    "`main-ae9102a` main after the first profile pass, `after` the second pass, `after-<commit>` the third. "
    "Rates are wall-clock steps/s of the tick alone; steps/cpu-s divides by this process's CPU time, "
    "the fairer figure on a loaded, shared machine.",
    "Profile (pyinstrument, `--profile`), first pass: 2-3 queries per step (the audit row's existence, "
    "its insert, each effect's existence) -> one query per batch for the step keys already recorded, "
    "preloaded leads/reps/teams, effects of a new decision never looked up.",
    "Second pass: each audit row was still flushed on its own to learn its id (its effects and the "
    "breach note name it): 70 % of a PostgreSQL burst. Now the tick reserves the batch's audit ids in "
    "one query (PostgreSQL: the sequence; SQLite: max(id)+1 under the write lock, the ids SQLite would "
    "have given), so the batch's audit rows, outbox rows and clock updates go in with one bulk flush "
    "at commit.",
    "Third pass (rows `after-<commit>`; `after` is the second pass): the tick's new audit and outbox rows "
    "are built without ORM instrumentation and inserted per batch by Core executemany (sidecar/store/"
    "bulk.py; written before any query, flush or commit, so lookups still see them), the batch's clock "
    "UPDATEs go in the same way, preloaded leads/reps/teams are found by dict look-up (sidecar/store/"
    "preloaded.py) instead of Session.get, the step-key preload reads each ladder once per batch, and "
    "the business calendar remembers the instants it located lately (the tick's `now`, shared starts). "
    "Profile after it (cProfile, CPU time, 5,000 steps): no single hot spot left; ORM attribute reads on "
    "the loaded clock/lead/reps (~100 a step, ~8 %), building the notification and its payload (~12 %), "
    "three calendar computations per step, the Core INSERTs' bind processing and the ORM loading of "
    "the due clocks and their leads each take roughly 5-8 %.",
]


if __name__ == "__main__":
    main()
