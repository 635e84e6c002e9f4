"""Shared by bench_burst.py and bench_firing_lag.py: machine facts, a store with the demo org's
teams and reps, leads and clocks inserted in bulk, and the loopback emulators of HubSpot and Slack.

Everything runs on loopback; nothing here reaches a real API.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, insert, text

from connectors.emulators.demo_org import DemoOrg
from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.slack import SlackEmulator
from connectors.emulators.synthetic import generate
from sidecar.policy import validate_policy
from sidecar.policy.model import Policy
from sidecar.policy.version import record_version
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import Clock, Lead, Rep, Team

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "scripts" / "results"


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(), "python": sys.version.split()[0],
            "platform": platform.platform(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def bench_policy(max_per_recipient: int = 4) -> Policy:
    """The example policy; `max_per_recipient` raised to measure each message's own lag (the noise
    control would otherwise hold most warnings back for a digest, on purpose)."""
    raw = yaml.safe_load((ROOT / "config" / "policy.example.yaml").read_text())
    raw["noise"]["max_per_recipient"] = max_per_recipient
    return validate_policy(raw)


def reset_database(url: str) -> None:
    """Empty a PostgreSQL database (the bench's own) so migrations start fresh; SQLite files are new anyway."""
    if not url.startswith("postgresql"):
        return
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@dataclass
class Org:
    engine: Engine
    version: str
    owners: dict[str, list[tuple[str, str]]]  # market -> (HubSpot owner id, team id) of its reps
    demo: DemoOrg


def build_org(url: str, policy: Policy, activated: datetime, clock: Callable[[], datetime],
              hubspot: HubSpotEmulator, slack: SlackEmulator) -> Org:
    """Migrated store with the policy and the demo org's teams and reps (owners in the emulators)."""
    reset_database(url)
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    demo = DemoOrg.build(generate(1, clock(), timedelta(days=1)), None, hubspot, slack)
    with transaction(sessions) as session:
        version = record_version(session, policy, "bench", activated).version
        demo.write_directory(session, policy)
    owners: dict[str, list[tuple[str, str]]] = {}
    with transaction(sessions) as session:
        teams = {team.id: team.market for team in session.query(Team)}
        for rep in session.query(Rep).filter(Rep.role == "rep", Rep.active.is_(True)).order_by(Rep.id):
            if rep.team_id in teams:
                owners.setdefault(teams[rep.team_id], []).append((rep.id, rep.team_id))
    return Org(engine, version, owners, demo)


@dataclass(frozen=True)
class Planned:
    """One lead with one open SLA clock whose step `step` is due at `due` (window `window_s`)."""

    market: str
    due: datetime
    step: int
    window_s: int = 4 * 3600


FRACTIONS = (0.8, 1.0, 1.5)  # the example ladder
COUNTRY = {"IN": "India", "US-East": "United States", "DACH": "Germany"}  # the example field map's values


def insert_leads(org: Org, hubspot: HubSpotEmulator | None, plans: Iterable[Planned],
                 in_crm: Callable[[int], bool] = lambda i: True, chunk: int = 10_000) -> int:
    """Leads, their team and owner, and a running clock each, in bulk (Core inserts). A clock whose
    step `step` is due at `due` started `fraction * window` before it: with business hours in
    between the true start would be earlier, but the tick only reads `next_due_at`, so the step
    fires at `due` exactly as planned. Leads with `in_crm(i)` are also created in the HubSpot
    emulator (so their notes and tasks have a record to go on); the rest carry made-up ids."""
    count = 0
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    counters = dict.fromkeys(org.owners, 0)

    def flush() -> None:
        with org.engine.begin() as connection:
            connection.execute(insert(Lead), [lead for lead, _ in rows])
            connection.execute(insert(Clock), [clock for _, clock in rows])
        rows.clear()

    for i, plan in enumerate(plans):
        owners = org.owners[plan.market]
        owner, team = owners[counters[plan.market] % len(owners)]
        counters[plan.market] += 1
        started = plan.due - timedelta(seconds=FRACTIONS[plan.step] * plan.window_s)
        crm_id = f"9{i:011d}"
        if hubspot is not None and in_crm(i):
            crm_id = hubspot.insert("contacts", {"firstname": "Bench", "lastname": f"Lead {i}",
                                                 "company": f"Company {i % 500}", "email": f"lead{i}@bench.example",
                                                 "hs_lead_status": "NEW", "hubspot_owner_id": owner,
                                                 "country": COUNTRY.get(plan.market, plan.market)})
        lead = {"id": i + 1, "crm": "hubspot", "crm_id": crm_id, "name": f"Bench Lead {i}",
                "company": f"Company {i % 500}", "email": f"lead{i}@bench.example", "market": plan.market,
                "source": "web_form", "intent": "mid", "intent_rule": "default", "state": "NEW",
                "crm_status": "NEW", "owner_id": owner, "team_id": team, "flags": [],
                "state_entered_at": started, "crm_modified_at": started, "created_at": started}
        clock = {"id": i + 1, "lead_id": i + 1, "kind": "sla", "state": "NEW", "rule_id": "new.default",
                 "policy_version": org.version, "market": plan.market, "window_s": plan.window_s,
                 "started_at": started, "consumed_s": 0.0, "running_since": started, "steps_fired": plan.step,
                 "next_due_at": plan.due, "status": "open"}
        rows.append((lead, clock))
        count += 1
        if len(rows) >= chunk:
            flush()
    if rows:
        flush()
    if org.engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
        with org.engine.begin() as connection:
            for table in ("leads", "clocks"):
                connection.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    return count


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
