"""End to end: a HubSpot webhook announcing a new contact -> its first-response task exists in the
emulated HubSpot. p50/p99 of that latency at 100 new leads per second into a real `sidecar run`.

The contacts exist in the emulator (owned, in the US-East market) before their creation webhooks are
sent, one event a request, on an open-loop schedule of --rate per second by the separate load
generator (scripts/bench_loadgen.py), which records each send on the wall clock. This process hosts
the emulator and watches its tasks every 20 ms: the latency of a lead is the first sighting of a
task associated with it minus the send of its webhook. In `sidecar run` a stored webhook wakes the
drain at once (sidecar.doorbell) and each batch it applies wakes the dispatcher; their intervals
(SIDECAR_WEBHOOK_DRAIN_INTERVAL_SECONDS / SIDECAR_DISPATCH_INTERVAL_SECONDS = 1) are the safety net.

    python scripts/bench_end_to_end.py [--leads 300] [--rate 100] [--label after] [--note "..."]

Prints a table and writes scripts/results/bench_end_to_end.json (rows of other labels kept). About
a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import (
    ROOT,
    SidecarProcess,
    kept_rows,
    load_text,
    machine,
    percentile,
    print_table,
    sidecar_env,
    target,
    wait_for,
    write,
)
from bench_webhook_intake import PORTAL, SECRET, fresh_database

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.auth import Credentials, HubSpotAuth
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.limits import LimitSettings, RateLimiter
from connectors.hubspot.writer import HubSpotWriter

TARGET_P99_S = 2.0
# Measured before a stored webhook woke the drain and an applied batch woke dispatch (commit ae9102a).
BEFORE = {"p50_s": 1.95, "p99_s": 3.91}


def watch(emulator: HubSpotEmulator, wanted: set[str], seen: dict[str, float], stop: threading.Event) -> None:
    """Every 20 ms, which of the contacts still waiting have a task associated. Only those are looked
    up (an index lookup each): rendering every task each time held the emulator's lock for longer
    and longer as tasks piled up, slowing the very API calls being measured."""
    while not stop.is_set() and len(seen) < len(wanted):
        for contact in [c for c in wanted if c not in seen]:
            if emulator.associations_of("contacts", contact, "tasks"):
                seen[contact] = time.time()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0, help="new leads (webhooks) per second")
    parser.add_argument("--label", default="after", help="the row's name: which code was measured")
    parser.add_argument("--note", default="", help="what changed, kept with the row")
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory() as tmp, HubSpotEmulator() as emulator:
        workdir = Path(tmp)
        url = fresh_database(None, workdir)
        owner = emulator.add_owner("rep@example.com", "Rea", "Rep")
        # The task key property, as the setup creates it (`sidecar check`, README).
        HubSpotWriter(HubSpotApi(HubSpotAuth(Credentials(DEFAULT_TOKEN, host=emulator.url)),
                                 RateLimiter(LimitSettings(), time.time, time.sleep)), FieldMap()).ensure_properties()
        env = sidecar_env(database_url=url, hubspot_access_token=DEFAULT_TOKEN, hubspot_api_base=emulator.url,
                          hubspot_app_secret=SECRET, hubspot_portal_id=PORTAL, web_port="0",
                          webhook_drain_interval_seconds="1", dispatch_interval_seconds="1", log_level="INFO")
        child = SidecarProcess(env, workdir, workdir / "run.log")
        try:
            base = child.url()
            time.sleep(3)  # the first poll of an empty portal
            contacts = emulator.insert_many("contacts", ({
                "email": f"e2e{i}@example.com", "firstname": "E", "lastname": f"Lead {i}", "hs_lead_status": "NEW",
                "hubspot_owner_id": owner, "country": "United States"} for i in range(args.leads)))
            seen: dict[str, float] = {}
            stop = threading.Event()
            watcher = threading.Thread(target=watch, args=(emulator, set(contacts), seen, stop), daemon=True)
            watcher.start()
            spec = {"kind": "hubspot", "url": base, "requests": args.leads, "concurrency": 16, "per_request": 1,
                    "ids": contacts, "secret": SECRET, "org_id": "", "rate": args.rate, "seed": 7}
            path = workdir / "spec.json"
            path.write_text(json.dumps(spec))
            done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_loadgen.py"), str(path)],
                                  capture_output=True, check=True, timeout=300)
            result = json.loads(done.stdout)
            try:
                wait_for(lambda: len(seen) >= args.leads, "a task for every new lead", 120, child)
            except SystemExit as exc:
                print(exc, "; the tail of its log:")
                print("\n".join(child.log.read_text().splitlines()[-15:]))
            stop.set()
            watcher.join(5)
        finally:
            child.stop()
    latencies = [seen[c] - sent for c, sent in zip(contacts, result["sent_unix"], strict=True) if c in seen]
    row = {"label": args.label, "leads": args.leads, "rate_per_s": args.rate,
           "webhooks_accepted": len(result["accepted_deliveries"]),
           "tasks_seen": len(latencies), "p50_s": round(percentile(latencies, 50), 2),
           "p99_s": round(percentile(latencies, 99), 2), "max_s": round(max(latencies, default=0), 2),
           "send_elapsed_s": round(result["elapsed_s"], 1)}
    print_table(list(row)[1:], [list(row.values())[1:]])
    row.update(load_at_start=load_text(info), started_at=info["started_at"], note=args.note)
    ok = row["tasks_seen"] == args.leads and row["p99_s"] < TARGET_P99_S
    targets = [target(f"webhook -> first-response task at {args.rate:g} new leads/s (HubSpot, SQLite)",
                      f"p99 < {TARGET_P99_S} s", f"p99 {row['p99_s']} s, p50 {row['p50_s']} s; "
                      f"{row['tasks_seen']}/{args.leads} tasks", ok,
                      "" if ok else "the drain, the dispatcher and the task create are woken at once and wait "
                      "little for one another; what remains is the queue before the drain: applying a new lead (its "
                      "snapshot, clocks, patterns, first-response task and audit) costs several ms of CPU, so at "
                      "this rate the drain alone needs most of a core, on 2 cores shared with the load generator "
                      f"and the emulator (load average {(info['load_average_at_start'] or ['?'])[0]} at the start)",
                      value=row["p99_s"], limit=TARGET_P99_S)]
    rows = kept_rows("bench_end_to_end", [row], ("label", "leads", "rate_per_s"))
    write("bench_end_to_end", {"benchmark": "webhook to first-response task", "machine": info, "rows": rows,
                               "before": BEFORE, "targets": targets})


if __name__ == "__main__":
    main()
