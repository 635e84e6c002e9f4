"""The webhook drain's cost of applying one new lead: CPU ms and SQL statements per lead.

`sync.drain_intake` is run in this process on a fresh SQLite store (the example policy, one team,
one rep) for --leads new HubSpot contacts announced by webhook, read from a stub reader (no HTTP:
only the apply is measured). Each new lead is owned and in business hours, so each gets what the
end-to-end bench waits for: its clocks, its first-response decision and task. CPU is this
process's (time.process_time), the median of --rounds rounds after a warm-up round; statements are
counted at the DB-API cursor. At 100 new leads/s, 5 ms a lead is half a core.

    python scripts/bench_drain_apply.py [--leads 300] [--rounds 3] [--label after] [--note "..."]

Writes scripts/results/bench_drain_apply.json (rows of other labels kept). Under a minute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import ROOT, kept_rows, load_text, machine, print_table, target, write
from sqlalchemy import event

from sidecar.domain import Crm, LeadSnapshot
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.policy import load_policy
from sidecar.policy.version import record_version
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import Rep, Team
from sidecar.sync import drain_intake, enqueue_intake

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # a Tuesday, 09:00 in New York: business hours
OWNER = "101"


class StubReader:
    """What the HubSpot reader hands over for a new, owned US contact (no HTTP)."""

    crm = Crm.HUBSPOT

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        return [LeadSnapshot(crm=Crm.HUBSPOT, crm_id=i, crm_status="NEW", crm_modified_at=START, name=f"E Lead {i}",
                             company="", email=f"e{i}@example.com", market="US-East", source=None,
                             owner_id=OWNER, created_at=START, country="US") for i in crm_ids]


def drain(url: str, ids: list[str]) -> tuple[float, int]:
    """Enqueue `ids`, drain them; (CPU seconds of the drain, SQL statements it ran)."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        enqueue_intake(session, "hubspot", [(f"d{i}", i) for i in ids], START)
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine, "before_cursor_execute", count)
    ctx = EngineContext(PolicyBook(), RecordLinks())
    began = time.process_time()
    applied = drain_intake(sessions, ctx, StubReader(), START + timedelta(seconds=1))
    cpu = time.process_time() - began
    event.remove(engine, "before_cursor_execute", count)
    engine.dispose()
    assert applied == len(ids), f"applied {applied} of {len(ids)}"
    return cpu, statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="after", help="the row's name: which code was measured")
    parser.add_argument("--note", default="", help="what changed, kept with the row")
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'drain.db'}"
        engine = make_engine(url)
        migrate(engine)
        with transaction(session_factory(engine)) as session:
            policy = load_policy(ROOT / "config/policy.example.yaml")
            record_version(session, policy, "bench", START - timedelta(days=1))
            session.add(Team(id="t", name="Team", market="US-East", manager_id=None, slack_channel="#t"))
            session.flush()
            session.add(Rep(id=OWNER, crm="hubspot", name="Rea Rep", email="rep@example.com", team_id="t"))
        engine.dispose()
        drain(url, [f"9{n:06d}" for n in range(20)])  # warm-up: policy and calendar caches
        runs = [drain(url, [f"{r + 1}{n:06d}" for n in range(args.leads)]) for r in range(args.rounds)]
    cpu_ms = statistics.median(cpu for cpu, _ in runs) * 1000 / args.leads
    per_lead = statistics.median(n for _, n in runs) / args.leads
    row = {"label": args.label, "leads": args.leads, "rounds": args.rounds, "cpu_ms_per_lead": round(cpu_ms, 2),
           "sql_statements_per_lead": round(per_lead, 1)}
    print_table(list(row)[1:], [list(row.values())[1:]])
    row.update(load_at_start=load_text(info), started_at=info["started_at"], note=args.note)
    rows = kept_rows("bench_drain_apply", [row], ("label", "leads"))
    write("bench_drain_apply", {"benchmark": "webhook drain: apply one new lead", "machine": info, "rows": rows,
                                # Item 6 sets the end-to-end target; this is the profile of its hot path.
                                "targets": [target("drain CPU per new lead (SQLite, stub reader)",
                                                   "no threshold (the hot path of item 6)",
                                                   f"{cpu_ms:.2f} ms, {per_lead:.1f} SQL statements a lead "
                                                   f"(load {load_text(info)})", None)]})


if __name__ == "__main__":
    main()
