"""Benchmark the HubSpot connector against the emulator on virtual time.

1. Backfill of N contacts (default 50,000): search calls (target <= ceil(N/200) + 10), batch reads,
   429s (target 0 with default limits), virtual seconds the rate limits imposed, wall seconds; and
   requests the client sent vs the emulator received (equal: nothing is resent behind the gate).
2. Writing 1,000 tasks: batch calls by kind (target <= 10 in all: associations ride in the
   creates), then a replay of the same 1,000 keys (target: nothing created).

Rate limits are real (the emulator enforces them on its injected clock); the connector's limiter
sleeps by advancing that clock, so nothing actually waits. Wall time is CPU: HTTP on loopback,
JSON parsing, and the emulator's own search (it scans every record per query).
Usage: python scripts/bench_hubspot_sync.py [--contacts 50000] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.auth import Credentials, HubSpotAuth
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.limits import LimitSettings, RateLimiter
from connectors.hubspot.reader import HubSpotReader
from connectors.hubspot.writer import HubSpotWriter
from sidecar.domain import Crm
from sidecar.ports import Cursor, LeadContext, TaskRequest

RESULTS = Path(__file__).resolve().parent / "results" / "bench_hubspot_sync.json"


class VirtualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def seconds(self) -> float:
        return self.now.timestamp()


def _api(emulator: HubSpotEmulator, clock: VirtualClock) -> HubSpotApi:
    return HubSpotApi(HubSpotAuth(Credentials(DEFAULT_TOKEN, host=emulator.url)),
                      RateLimiter(LimitSettings(), clock.seconds, clock.advance))


def backfill(count: int) -> dict[str, Any]:
    clock = VirtualClock()
    with HubSpotEmulator(clock=clock) as emulator:
        started = time.perf_counter()
        for start in range(0, count, 500):  # 500 contacts per virtual second: realistic ties
            emulator.insert_many("contacts", ({"email": f"c{i}@example.com", "hs_lead_status": "NEW"}
                                              for i in range(start, min(start + 500, count))))
            clock.advance(1)
        seed_s = time.perf_counter() - started
        api = _api(emulator, clock)
        # A long lookback so that the whole backfill is one read_changes call.
        reader = HubSpotReader(api, FieldMap(), clock=clock, engagement_lookback=timedelta(hours=2))
        virtual_start, started = clock(), time.perf_counter()
        seen: set[str] = set()
        rows = 0
        for page in reader.read_changes(Cursor()):
            rows += len(page.snapshots)
            seen.update(s.crm_id for s in page.snapshots)
        wall = time.perf_counter() - started
        statuses = [entry["status"] for entry in emulator.log.entries]
        return {"contacts": count, "snapshots": rows, "unique": len(seen),
                "searches": reader.sweep.searches + reader.engagements.searches,
                "lead_searches": reader.sweep.searches, "engagement_searches": reader.engagements.searches,
                "search_target": math.ceil(count / 200) + 10, "restarts": reader.sweep.restarts,
                "restart_counts": reader.sweep.counts, "reread": reader.sweep.reread,
                "requests_sent": sum(api.calls.values()), "requests_received": len(statuses),
                "batch_reads": reader.batch_reads, "http_429": statuses.count(429),
                "http_429_policies": dict(api.limiter.policies),
                "limiter_wait_virtual_s": round(api.limiter.general.waited + api.limiter.search.waited, 1),
                "virtual_s": (clock() - virtual_start).total_seconds(), "wall_s": round(wall, 2),
                "seed_wall_s": round(seed_s, 2), "rows_per_wall_s": round(rows / wall)}


def write_tasks(count: int) -> dict[str, Any]:
    clock = VirtualClock()
    with HubSpotEmulator(clock=clock) as emulator:
        contacts = emulator.insert_many("contacts", ({"email": f"t{i}@example.com"} for i in range(count)))
        api = _api(emulator, clock)
        writer = HubSpotWriter(api, FieldMap())
        writer.ensure_properties()
        api.calls.clear()
        items = [(TaskRequest(LeadContext(Crm.HUBSPOT, c, "n", "co", None, None, None, "NEW", "1", None,
                                          f"https://app.hubspot.com/contacts/1/record/0-1/{c}"),
                              "70000001", "Call now", "SLA", clock() + timedelta(hours=1)), f"key-{c}")
                 for c in contacts]
        started = time.perf_counter()
        batch_before = emulator.request_counts["batch"]
        ids = writer.create_tasks(items)
        wall = time.perf_counter() - started
        calls = dict(api.calls)
        batch_calls = emulator.request_counts["batch"] - batch_before
        in_crm = len(emulator.records("tasks"))
        # A replay of every key (the outbox after a crash): one search per 50 keys finds them all
        # (task keys cannot be unique in HubSpot); nothing created.
        api.calls.clear()
        batch_before = emulator.request_counts["batch"]
        again = writer.create_tasks(items)
        written = {key: value for key, value in ids.items() if isinstance(value, str)}
        return {"tasks": count, "created": len(set(written.values())), "failed": len(ids) - len(written),
                "in_crm": in_crm, "batch_calls": batch_calls, "calls": calls,
                "replay": {"keys": len(items), "same_ids": again == ids,
                           "created": len(emulator.records("tasks")) - in_crm,
                           "batch_calls": emulator.request_counts["batch"] - batch_before,
                           "calls": dict(api.calls)},
                "http_429": [e["status"] for e in emulator.log.entries].count(429), "wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    args = parser.parse_args()
    sync = backfill(args.contacts)
    tasks = write_tasks(args.tasks)
    result = {"backfill": sync, "tasks": tasks,
              "machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
              "at": datetime.now(UTC).isoformat()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    rows = [("backfill contacts", sync["contacts"], ""),
            ("unique snapshots", sync["unique"], sync["contacts"]),
            ("search calls (leads + engagements)", sync["searches"], f"<= {sync['search_target']}"),
            ("window restarts (10k cap)", sync["restarts"], ""),
            ("  count calls proving exact restarts", sync["restart_counts"], ""),
            ("  records served twice", sync["reread"], ""), ("batch reads", sync["batch_reads"], ""),
            ("requests sent / received", f"{sync['requests_sent']}/{sync['requests_received']}", "equal"),
            ("HTTP 429 (backfill)", sync["http_429"], 0), ("virtual seconds", sync["virtual_s"], ""),
            ("wall seconds", sync["wall_s"], ""), ("tasks written", tasks["created"], tasks["tasks"]),
            ("batch calls (emulator count)", tasks["batch_calls"], "<= 10"),
            ("  batch creates (with associations)", tasks["calls"].get("batch_api.create", 0), ""),
            ("  batch reads (read-back)", tasks["calls"].get("batch_api.read", 0), 0),
            ("  searches by key (before creating)", tasks["calls"].get("search_api.do_search", 0), "<= 20"),
            ("replay: tasks created", tasks["replay"]["created"], 0),
            ("replay: same ids", tasks["replay"]["same_ids"], True),
            ("replay: batch calls", tasks["replay"]["batch_calls"], 0),
            ("replay: searches by key", tasks["replay"]["calls"].get("search_api.do_search", 0), "<= 20"),
            ("HTTP 429 (tasks)", tasks["http_429"], 0), ("task wall seconds", tasks["wall_s"], "")]
    print(f"{'measure':<38}{'value':>12}{'target':>12}")
    for name, value, target in rows:
        print(f"{name:<38}{value!s:>12}{target!s:>12}")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
