"""`python -m connectors.emulators.chaos_org`: emulated HubSpot and Slack as their own process, with
fault injection on, and the synthetic org living in them on the shared accelerated clock.

What scripts/chaos_run.py starts beside several `sidecar run` processes. The clock is the one
SIDECAR_CLOCK describes (sidecar.bench_clock: the same setting the sidecars get, so all processes
share one virtual time). At start it writes the org's directory and the example policy into the
database the sidecars use (SIDECAR_DATABASE_URL), as serve.py does. Then, in a thread, the org
lives: leads arrive at their virtual times (owners round robin in their team), owners log a first
call after their own business-time delay (or never), and a seeded share of leads is handed to
another rep by a person in the CRM (sourceType CRM_UI), racing the sidecar's own reassignments.
These human actions go to the store directly, so injected faults hit only the sidecars' calls.

Faults (each at `--fault-rate` of matching requests): 5xx, 429, dropped connections, timeouts
(a long wait, then 504-style 5xx) and slow responses on every HubSpot /crm call and Slack Web API
call; expired sessions (HTTP 401) on HubSpot searches only: with a private-app token a 401 on a
write means a revoked token, which the sidecar rightly dead-letters, while a failing poll is retried.

A fault-free control server (loopback) answers GET /state (everything the verification needs:
both emulators' records, owner history with sources, Slack messages with their keys, faults served
by kind, the human changes) and POST /faults/off (the quiet tail of a run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from connectors.emulators.demo_org import DemoOrg, Person
from connectors.emulators.http import Emulator, Request, Response
from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.emulators.hubspot_schema import ObjectType, resolve_type
from connectors.emulators.reps import CONTACTED, ON_HOLD
from connectors.emulators.slack import SlackEmulator
from connectors.emulators.synthetic import SynthLead, generate, response_delay
from sidecar import bench_clock, wiring
from sidecar.policy import load_policy
from sidecar.policy.version import active_version, record_version
from sidecar.settings import Settings
from sidecar.store.db import make_engine, migrate, session_factory, transaction

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"
MARKET_COUNTRY = {"IN": "India", "US-East": "United States", "DACH": "Germany"}  # the default field map's values
HUMAN_HANDOVER_SHARE = 0.15  # leads a person hands to a colleague in the CRM
SEARCH_LAG_S = 5.0  # virtual seconds before a new record shows in search (HubSpot: "several seconds")
log = logging.getLogger("sidecar.chaos_org")


@dataclass
class Tracked:
    key: str
    crm_id: str
    team: str
    owner: str
    owned_since: datetime
    on_hold: bool
    handover_at: datetime | None
    acted: bool = False


class Control(Emulator):
    """The fault-free side door the chaos driver reads the state from."""

    service = "control"

    def __init__(self, state: Callable[[], dict[str, Any]], quiet: Callable[[], None]) -> None:
        super().__init__()
        self.router.add("GET", r"/state", lambda _r: Response(200, json.dumps(state(), default=str)))
        def off(_request: Request) -> Response:
            quiet()
            return Response(204)

        self.router.add("POST", r"/faults/off", off)


class ChaosOrg:
    def __init__(self, seed: int, days: float, clock: Callable[[], datetime], fault_rate: float) -> None:
        self.seed, self.clock = seed, clock
        self.start = clock()
        self.end = self.start + timedelta(days=days)
        self.synthetic = generate(seed, self.start, self.end - self.start)
        self.pending: list[SynthLead] = list(self.synthetic.leads)
        self.tracked: dict[str, Tracked] = {}
        self.human_changes: list[dict[str, Any]] = []
        self.slack = SlackEmulator(seed, clock)
        self.hubspot = HubSpotEmulator(seed, clock)
        self.hubspot.search_lag_s = SEARCH_LAG_S
        self.fault_rate = fault_rate
        self._lock = threading.Lock()
        self.done = threading.Event()

    def start_servers(self, hubspot_port: int, slack_port: int) -> None:
        self.hubspot.start(port=hubspot_port)
        self.slack.start(port=slack_port)
        self.org = DemoOrg.build(self.synthetic, None, self.hubspot, self.slack)

    def faults_on(self) -> None:
        rate = self.fault_rate
        for emulator, prefix in ((self.hubspot, "/crm"), (self.slack, "/api/")):
            emulator.faults.add("server_error", rate=rate, path_prefix=prefix)
            emulator.faults.add("rate_limit", rate=rate, path_prefix=prefix)
            emulator.faults.add("drop", rate=rate, path_prefix=prefix)
            emulator.faults.add("timeout", rate=rate / 2, seconds=0.3, path_prefix=prefix)
            emulator.faults.add("latency", rate=rate, seconds=0.1, path_prefix=prefix)
        self.hubspot.faults.add("expired_session", rate=rate * 3, path_prefix="/crm/v3/objects/contacts/search")

    def faults_off(self) -> None:
        self.hubspot.faults.clear()
        self.slack.faults.clear()

    # --- the org's life -------------------------------------------------------------------------

    def live(self, pause: float = 0.02) -> None:
        while not self.done.is_set():
            now = self.clock()
            with self._lock, self.hubspot._lock:
                while self.pending and self.pending[0].at <= now:
                    self._arrive(self.pending.pop(0), now)
                self._behave(now)
            if now >= self.end and not self.pending:
                self.done.set()
            time.sleep(pause)

    def _arrive(self, lead: SynthLead, now: datetime) -> None:
        reps = self.synthetic.team_reps(lead.team)
        person = self.org.people[reps[len(self.tracked) % len(reps)].key]
        crm_id = self.hubspot.insert("contacts", {
            "firstname": lead.first_name, "lastname": lead.last_name, "company": lead.company,
            "email": lead.email, "hs_lead_status": "NEW", "hubspot_owner_id": person.user_id("hubspot"),
            "country": MARKET_COUNTRY.get(lead.market, lead.market)})
        handover = None
        digest = hashlib.sha256(f"{self.seed}:{lead.key}:handover".encode()).digest()
        if int.from_bytes(digest[:4], "big") / 2**32 < HUMAN_HANDOVER_SHARE:
            handover = now + timedelta(minutes=10 + digest[4] % 180)
        self.tracked[lead.key] = Tracked(lead.key, str(crm_id), lead.team, person.user_id("hubspot"), now,
                                         lead.on_hold, handover)

    def _owner(self, crm_id: str) -> str:
        record = self.hubspot.store.get(self._contacts, crm_id)
        return str(record.values().get("hubspot_owner_id") or "")

    @property
    def _contacts(self) -> ObjectType:
        return resolve_type("contacts")

    def _behave(self, now: datetime) -> None:
        for lead in self.tracked.values():
            if lead.acted:
                continue
            owner = self._owner(lead.crm_id)
            if owner != lead.owner:
                lead.owner, lead.owned_since = owner, now
            if lead.handover_at is not None and now >= lead.handover_at:
                self._hand_over(lead, now)
                continue
            person = self.org.by_user.get(owner)
            if person is None or person.on_pto(now):
                continue
            delay = response_delay(self.seed, lead.key, person.rep)
            if delay is None or now < person.calendar.add(lead.owned_since, delay):
                continue
            call = self.hubspot.insert("calls", {
                "hs_timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "hubspot_owner_id": owner,
                "hs_call_title": "First contact", "hs_call_status": "COMPLETED"})
            self.hubspot.associate("calls", str(call), "contacts", lead.crm_id)
            status = ON_HOLD["hubspot"] if lead.on_hold else CONTACTED["hubspot"]
            self.hubspot.update_as_user("contacts", lead.crm_id, {"hs_lead_status": status})
            lead.acted = True

    def _hand_over(self, lead: Tracked, now: datetime) -> None:
        """A manager gives the lead to the next rep of the team, in the CRM's UI."""
        lead.handover_at = None
        reps: list[Person] = [self.org.people[rep.key] for rep in self.synthetic.team_reps(lead.team)]
        ids = [person.user_id("hubspot") for person in reps]
        current = lead.owner
        target = ids[(ids.index(current) + 1) % len(ids)] if current in ids else ids[0]
        self.hubspot.update_as_user("contacts", lead.crm_id, {"hubspot_owner_id": target})
        lead.owner, lead.owned_since = target, now
        self.human_changes.append({"lead": lead.crm_id, "at": now.isoformat(), "to": target})

    # --- what the verification reads ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            hubspot = self.hubspot.export()
            with self.hubspot._lock:
                owner_history = {
                    str(record.id): [{"value": v.value, "at": v.timestamp.isoformat(), "source": v.source_type}
                                     for v in record.history.get("hubspot_owner_id", [])]
                    for record in self.hubspot.store.records[self._contacts.name].values()}
            return {"now": self.clock().isoformat(), "start": self.start.isoformat(), "end": self.end.isoformat(),
                    "done": self.done.is_set(), "leads": [asdict(t) for t in self.tracked.values()],
                    "pending_leads": len(self.pending), "human_changes": list(self.human_changes),
                    "faults": {"hubspot": dict(self.hubspot.faults.injected),
                               "slack": dict(self.slack.faults.injected)},
                    "hubspot": {"tasks": hubspot.get("tasks", []), "notes": hubspot.get("notes", []),
                                "owner_history": owner_history, "portal_id": self.hubspot.portal_id},
                    "slack": self.slack.export()}


def write_org(org: ChaosOrg, database_url: str) -> None:
    """The directory and the example policy into the sidecars' database (once per database)."""
    engine = make_engine(database_url)
    migrate(engine)
    sessions = session_factory(engine)
    policy = load_policy(EXAMPLE_POLICY)
    with transaction(sessions) as session:
        if active_version(session) is None:
            record_version(session, policy, str(EXAMPLE_POLICY), org.start - timedelta(days=1))
        org.org.write_directory(session, policy)
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--hubspot-port", type=int, required=True)
    parser.add_argument("--slack-port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--fault-rate", type=float, default=0.01, help="share of requests per fault kind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    clock = bench_clock.from_env(os.environ, time.time)
    if clock is None:
        raise SystemExit(f"chaos_org: set {bench_clock.CLOCK_ENV} (and {bench_clock.ALLOW_ENV}=1): "
                         "the emulators must share the sidecars' clock")
    org = ChaosOrg(args.seed, args.days, clock, args.fault_rate)
    org.start_servers(args.hubspot_port, args.slack_port)
    write_org(org, os.environ["SIDECAR_DATABASE_URL"])
    # The sidecar's key property on tasks and notes, as an admin's `sidecar check` set-up does.
    wiring.ensure_hubspot_properties(Settings().model_copy(update={
        "hubspot_access_token": SecretStr(DEFAULT_TOKEN), "hubspot_api_base": org.hubspot.url}))
    org.faults_on()
    control = Control(org.state, org.faults_off)
    control.start(port=args.control_port)
    print("ready", flush=True)
    org.live()
    threading.Event().wait()  # keep serving until the driver stops this process


if __name__ == "__main__":
    main()
