"""API calls the Salesforce connector spends: backfill (REST and Bulk), a quiet poll, a logged call,
1,000 tasks.

Runs against the loopback emulator over TLS and counts calls with the emulator's own API usage
counter (every REST request it answered, what Salesforce bills against the daily limit). Leads
are bulk-inserted with the emulator's helper, not over HTTP, so only the connector's calls count.

    python scripts/bench_salesforce_sync.py [--leads 100000]

Prints a table and writes scripts/results/bench_salesforce_sync.json with machine info.
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

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import make_loopback_tls
from connectors.salesforce.auth import SalesforceCredentials, connect
from connectors.salesforce.backfill import backfill
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm
from sidecar.ports import Cursor, LeadContext, TaskRequest

RESULTS = Path(__file__).resolve().parent / "results" / "bench_salesforce_sync.json"
START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def measure(emu: SalesforceEmulator, action: Any) -> tuple[int, float, Any]:
    emu.reset_api_usage()
    started = time.perf_counter()
    result = action()
    return emu.api_usage[0], time.perf_counter() - started, result


def drain(reader: SalesforceReader, cursor: Cursor) -> tuple[int, Cursor]:
    count = 0
    for page in reader.read_changes(cursor):
        count += len(page.snapshots)
        cursor = page.cursor
    return count, cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    clock = Clock()
    tls = make_loopback_tls()
    emu = SalesforceEmulator(clock=clock)
    for name, ftype in (("CompletedDateTime", "datetime"), ("ReminderDateTime", "datetime"),
                        ("IsReminderSet", "boolean")):
        emu.add_field("Task", name, ftype)  # standard on a real org's Task
    # Ours, set up as the README says: a Unique External ID, so tasks are upserted by it.
    emu.add_field("Task", "Sidecar_Key__c", "string", external_id=True, unique=True)
    emu.start(ssl_context=tls.server_context)
    rows: list[dict[str, Any]] = []
    try:
        inserted = time.perf_counter()
        lead_ids = []
        for index in range(args.leads):
            if index % 500 == 0:
                clock.now += timedelta(seconds=1)  # 500 leads share each SystemModstamp: many ties
            lead_ids.append(emu.insert("Lead", {"LastName": f"L{index}", "Company": "C", "Country": "India"}))
        insert_s = time.perf_counter() - inserted
        http = tls.client_session()
        client = connect(SalesforceCredentials(session_id=emu.access_token, instance_url=emu.url), http)
        reader, writer = SalesforceReader(client, clock=clock), SalesforceWriter(client)

        calls, took, (count, cursor) = measure(emu, lambda: drain(reader, Cursor()))
        target = math.ceil(args.leads / 2000) + 5
        rows.append({"case": f"backfill {args.leads} leads", "calls": calls, "target": target,
                     "seconds": round(took, 2), "detail": f"{count} snapshots"})
        calls, took, (count, cursor) = measure(emu, lambda: drain(reader, cursor))
        rows.append({"case": "steady poll, nothing changed", "calls": calls, "target": 1,
                     "seconds": round(took, 3),
                     "detail": "Task stream + Lead stream as one /composite call (see reader.py)"})
        clock.now += timedelta(minutes=1)
        emu.insert("Task", {"WhoId": lead_ids[0], "Subject": "Call", "Status": "Completed",
                            "TaskSubtype": "Call", "CompletedDateTime": clock.now.isoformat()})
        calls, took, (count, cursor) = measure(emu, lambda: drain(reader, cursor))
        rows.append({"case": "poll after one logged call (no Lead change)", "calls": calls, "target": None,
                     "seconds": round(took, 3), "detail": f"{count} snapshot(s)"})

        emu.log.clear()
        waits: list[float] = []  # the Bulk job polling's sleeps, not slept: the emulator runs on a counter
        calls, took, stats = measure(emu, lambda: backfill(client, reader.fields, None, lambda page: None,
                                                          clock=clock, sleep=waits.append))
        paths = [(e["method"], e["path"]) for e in emu.log.entries]
        creates = sum(1 for m, p in paths if m == "POST" and p.endswith("/jobs/query"))
        sets = sum(1 for _, p in paths if p.endswith("/results"))
        polls = sum(1 for m, p in paths if m == "GET" and "/jobs/query/" in p and not p.endswith("/results"))
        rows.append({"case": f"backfill() {args.leads} leads ({stats.via})", "calls": calls, "target": target,
                     "seconds": round(took, 2),
                     "detail": f"{stats.snapshots} snapshots in {stats.pages} pages; 1 COUNT() + {creates} jobs "
                               f"+ {polls} status polls + {sets} result sets + {calls - 1 - creates - polls - sets} "
                               f"other; {sum(waits):.0f} s of job polling waits"})

        lead = LeadContext(crm=Crm.SALESFORCE, crm_id=lead_ids[1], name="L1", company="C", market="IN",
                           source=None, intent=None, state="NEW", owner_id=emu.integration_user_id,
                           owner_name=None, record_url=reader.record_url(lead_ids[1]))
        batch = [(TaskRequest(lead=lead, owner_id=emu.integration_user_id, subject=f"Follow up {i}",
                              body="SLA breached", due_at=clock.now + timedelta(hours=1)), f"bench:{i:05d}")
                 for i in range(args.tasks)]
        for case in ("write", "replay"):  # a replay: the same keys again, as after a dispatcher crash
            emu.log.clear()
            before = len(emu.records("Task"))
            calls, took, result = measure(emu, lambda: writer.create_tasks(batch))
            upserts = sum(1 for e in emu.log.entries if e["path"].endswith("/composite/sobjects/Task/Sidecar_Key__c"))
            ok = sum(1 for value in result.values() if isinstance(value, str))
            rows.append({"case": f"{case} {args.tasks} tasks (collections upsert)", "calls": calls,
                         "target": math.ceil(args.tasks / 200), "seconds": round(took, 2),
                         "detail": f"{upserts} upserts + {calls - upserts} other; {ok} ok, {len(result) - ok} "
                                   f"failed, {len(emu.records('Task')) - before} new in the org"})
    finally:
        emu.stop()
    print(f"{'case':48} {'calls':>6} {'target':>7} {'seconds':>8}  detail")
    for row in rows:
        target = "-" if row["target"] is None else str(row["target"])
        print(f"{row['case']:48} {row['calls']:>6} {target:>7} {row['seconds']:>8}  {row['detail']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "bench_salesforce_sync", "rows": rows, "lead_insert_seconds": round(insert_s, 1),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
