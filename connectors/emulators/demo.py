"""`sidecar demo`: the real sidecar against emulated Salesforce, HubSpot and Slack, on virtual time.

Everything here is set-up and simulation; the sidecar part is the product's own code: the same
readers, writers, notifier, webhook receivers and jobs `sidecar run` uses, driven minute by
virtual minute (`jobs.run_cycle` semantics), so a 2-day org replays in seconds and the same seed
gives the same audit.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from connectors.emulators import scenario_actions
from connectors.emulators.demo_org import DemoOrg, Person
from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.reps import CONTACTED, ON_HOLD, SCORE, HubSpotReps, RepDriver, SalesforceReps
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.scenario import Scenario
from connectors.emulators.slack import SlackEmulator
from connectors.emulators.synthetic import SynthLead, generate, response_delay
from connectors.emulators.teams import TeamsWorkflowsEmulator
from connectors.emulators.tls import make_loopback_tls
from sidecar import audit, escalations, jobs
from sidecar.policy import load_policy
from sidecar.policy.version import record_version
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import OutboxRow
from sidecar.web.app import BackgroundServer

DEMO_START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday
ROOT = Path(__file__).resolve().parents[2]
POLL_EVERY = 5  # virtual minutes between polls; webhooks bring most changes sooner


class VirtualClock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def epoch(self) -> float:
        return self.at.timestamp()


@dataclass(frozen=True)
class DemoOptions:
    crm: str = "both"
    seed: int = 1
    scenario: Scenario | None = None
    policy: Path | None = None
    speed: float | None = None  # virtual minutes per real second / 60; None = as fast as possible
    duration: timedelta = timedelta(days=1)
    port: int = 0


@dataclass
class Tracked:
    key: str
    crm: str
    crm_id: str
    team: str
    owner: str | None
    owned_since: datetime
    acted: bool = False
    rescore: tuple[datetime, int] | None = None  # (when, new score): the synthetic lead's later score
    on_hold: bool = False


@dataclass
class DemoSummary:
    leads: int = 0
    ladder: Counter[str] = field(default_factory=Counter)  # typed: "warning", "breach", "after" (escalations.py)
    effects: Counter[str] = field(default_factory=Counter)
    slack_messages: int = 0
    webhook_url: str = ""
    seconds: float = 0.0
    actions: Counter[str] = field(default_factory=Counter)  # typed: "reassign" whatever the step's kind
    patterns: Counter[str] = field(default_factory=Counter)  # typed: "stuck", "high_value", ...
    teams_cards: int = 0  # Adaptive Cards the Teams workflows took (the demo's team on Teams)


class Demo:
    def __init__(self, options: DemoOptions, workdir: Path) -> None:
        self.options, self.workdir = options, workdir
        start = options.scenario.start if options.scenario else DEMO_START
        self.clock = VirtualClock(start)
        self.end = start + options.duration
        self.crms = ["salesforce", "hubspot"] if options.crm == "both" else [options.crm]
        self.synthetic = generate(options.seed, start, options.duration)
        self.tracked: dict[str, Tracked] = {}
        self.pending_leads = [] if options.scenario else list(self.synthetic.leads)
        self.pending_events = list(options.scenario.events) if options.scenario else []

    # --- set-up ------------------------------------------------------------------------------------

    def start(self) -> str:
        workdir, clock, seed = self.workdir, self.clock, self.options.seed
        engine = make_engine(f"sqlite:///{workdir / 'demo.db'}")
        migrate(engine)
        self.sessions = session_factory(engine)
        policy_path = self.options.policy or ROOT / "config" / "policy.example.yaml"
        policy = load_policy(policy_path)
        with transaction(self.sessions) as session:
            record_version(session, policy, str(policy_path), clock.now() - timedelta(days=1))
        self.http = requests.Session()
        self.http.trust_env = False
        self.slack = SlackEmulator(seed, clock.now)
        self.slack.start()
        self.teams = TeamsWorkflowsEmulator(seed, clock.now)
        self.teams.start()
        self.salesforce = self.hubspot = None
        drivers: dict[str, RepDriver] = {}
        if "salesforce" in self.crms:
            tls = make_loopback_tls(workdir / "tls")
            self.salesforce = SalesforceEmulator(seed, clock.now)
            self.salesforce.start(ssl_context=tls.server_context)
            self.sf_http = tls.client_session()
            drivers["salesforce"] = SalesforceReps(self.salesforce, self.sf_http)
        if "hubspot" in self.crms:
            # The demo portal is on a high API tier: many calls share one virtual instant here.
            self.hubspot = HubSpotEmulator(seed, clock.now, per_ten_seconds=100_000, search_per_second=100_000)
            self.hubspot.start()
            drivers["hubspot"] = HubSpotReps(self.hubspot, self.http, self.hubspot_token)
        self.drivers = drivers
        self.org = DemoOrg.build(self.synthetic, self.salesforce, self.hubspot, self.slack, self.teams)
        with transaction(self.sessions) as session:
            self.org.write_directory(session, policy)
        self.runtime = self.org.runtime(self.sessions, clock, self.salesforce, self.sf_http_or_none,
                                        self.hubspot, self.slack, seed)
        self.web = BackgroundServer(self.org.web_app(self.sessions, clock, self.salesforce, self.hubspot,
                                                        self.runtime.ctx),
                                    self.options.port)
        url = self.web.start()
        self.org.teams_notifier.dashboard_base = url  # managers' cards link to the lead's dashboard page
        if self.salesforce is not None:
            self.salesforce.configure_outbound(f"{url}/webhooks/salesforce")
        if self.hubspot is not None:
            self.hubspot.configure_webhooks(f"{url}/webhooks/hubspot", DemoOrg.HUBSPOT_APP_SECRET)
        return url

    @property
    def hubspot_token(self) -> str:
        from connectors.emulators.hubspot import DEFAULT_TOKEN
        return DEFAULT_TOKEN

    @property
    def sf_http_or_none(self) -> requests.Session | None:
        return self.sf_http if self.salesforce is not None else None

    # --- one virtual minute ------------------------------------------------------------------------

    def step(self, minute: int) -> None:
        now = self.clock.now()
        while self.pending_leads and self.pending_leads[0].at <= now:
            self._arrive(self.pending_leads.pop(0), len(self.tracked))
        while self.pending_events and self.pending_events[0].at <= now:
            event = self.pending_events.pop(0)
            self._scripted(event.action, event.args, now)
        if self.options.scenario is None:
            self._behave(now)
        if self.salesforce is not None:
            self.salesforce.deliver_outbound(self.sf_http)
        if self.hubspot is not None:
            self.hubspot.deliver_webhooks(self.http)
        jobs.run_cycle(self.runtime, now, poll=minute % POLL_EVERY == 0)

    def _crm_for(self, index: int) -> str:
        return self.crms[index % len(self.crms)]

    def _arrive(self, lead: SynthLead, index: int) -> None:
        crm = self._crm_for(index)
        reps = self.synthetic.team_reps(lead.team)
        # Round robin per CRM, so each CRM gets leads of fast, late and silent reps alike.
        person = self.org.people[reps[(index // len(self.crms)) % len(reps)].key]
        fields = {"first_name": lead.first_name, "last_name": lead.last_name, "company": lead.company,
                  "email": lead.email, "market": lead.market, "source": lead.source, "score": lead.score,
                  "tier": lead.tier, "deal_size": lead.deal_size, "flags": lead.flags}
        self._create(lead.key, crm, lead.team, fields, person)
        tracked = self.tracked[lead.key]
        tracked.on_hold = lead.on_hold
        if lead.rescore is not None:
            tracked.rescore = (lead.at + lead.rescore[0], lead.rescore[1])

    def _create(self, key: str, crm: str, team: str, fields: dict[str, Any], owner: Person) -> None:
        user = owner.user_id(crm)
        crm_id = self.drivers[crm].create_lead(fields, user)
        self.tracked[key] = Tracked(key, crm, crm_id, team, user, self.clock.now())

    def _behave(self, now: datetime) -> None:
        """Each owner works their new leads after their own delay, in business time; PTO means never."""
        for lead in self.tracked.values():
            driver = self.drivers[lead.crm]
            if lead.rescore is not None and now >= lead.rescore[0]:
                driver.update(lead.crm_id, {SCORE[lead.crm]: lead.rescore[1]}, lead.owner or "")
                lead.rescore = None
            if lead.acted:
                continue
            owner = driver.owner_of(lead.crm_id)
            if owner != lead.owner:
                lead.owner, lead.owned_since = owner, now
            person = self.org.by_user.get(owner or "")
            if person is None or person.on_pto(now):
                continue
            delay = response_delay(self.options.seed, lead.key, person.rep)
            if delay is None or now < person.calendar.add(lead.owned_since, delay):
                continue
            driver.log_activity(lead.crm_id, person.user_id(lead.crm), "call", now)
            status = ON_HOLD[lead.crm] if lead.on_hold else CONTACTED[lead.crm]
            driver.update(lead.crm_id, {"status": status}, person.user_id(lead.crm))
            lead.acted = True

    def _scripted(self, action: str, args: dict[str, Any], now: datetime) -> None:
        if action == "create_lead":
            first, _, last = str(args["name"]).partition(" ")
            owner = self.org.people[str(args["owner"])] if args.get("owner") else None
            team = owner.rep.team if owner else ""
            crm = str(args.get("crm") or self.crms[0])
            if crm not in self.drivers:
                raise ValueError(f"scenario lead {args['id']}: crm {crm!r} is not running in this demo")
            fields = {"first_name": first, "last_name": last or first, **{
                k: args.get(k) for k in ("company", "email", "market", "source", "status", "score", "tier",
                                         "deal_size", "flags")}}
            fields["company"] = fields["company"] or "Unknown"
            if owner is None:
                raise ValueError(f"scenario lead {args['id']}: give an owner (a rep key of the demo org)")
            self._create(str(args["id"]), crm, team, fields, owner)
            return
        if action == "set_pto":
            with transaction(self.sessions) as session:
                self.org.add_pto(session, str(args["rep"]), args["from"], args["to"])
            return
        if action in scenario_actions.PATTERN_ACTIONS:
            scenario_actions.apply(self, action, args, now)
            return
        lead = self.tracked[str(args["lead"])]
        driver = self.drivers[lead.crm]
        by = self.org.people[str(args["by"])].user_id(lead.crm) if args.get("by") else (lead.owner or "")
        if action in ("log_call", "send_email"):
            driver.log_activity(lead.crm_id, by, "call" if action == "log_call" else "email", now)
        elif action == "set_status":
            driver.update(lead.crm_id, {"status": args["status"]}, by)
        elif action == "set_owner":
            driver.update(lead.crm_id, {"owner": self.org.people[str(args["owner"])].user_id(lead.crm)}, by)
        elif action == "set_field":
            driver.update(lead.crm_id, {str(args["field"]): args["value"]}, by)

    # --- the run -----------------------------------------------------------------------------------

    def run(self, progress: Callable[[datetime, DemoSummary], None] | None = None) -> DemoSummary:
        """Replay the span; the web app stays up until `close` (`sidecar demo --serve` keeps it open)."""
        started = time.perf_counter()
        url = self.start()
        minute = 0
        while self.clock.at <= self.end:
            self.step(minute)
            if progress is not None and minute % 30 == 0:
                progress(self.clock.at, self.summary(url, started))
            if self.options.speed:
                time.sleep(60 / self.options.speed)
            self.clock.at += timedelta(minutes=1)
            minute += 1
        return self.summary(url, started)

    def summary(self, url: str, started: float) -> DemoSummary:
        with transaction(self.sessions) as session:
            ladder = escalations.ladder_counts(session)
            effects = Counter({f"{a}:{s}": int(n) for a, s, n in session.execute(
                select(OutboxRow.action, OutboxRow.status, func.count())
                .group_by(OutboxRow.action, OutboxRow.status)).all()})
            actions = Counter(audit.action_counts(session))
            patterns = Counter(audit.pattern_counts(session))
        return DemoSummary(len(self.tracked), ladder, effects, len(self.slack.export()), url,
                           time.perf_counter() - started, actions, patterns, len(self.teams.export()))

    def write_outputs(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        with transaction(self.sessions) as session, (out / "audit.jsonl").open("w") as handle:
            handle.writelines(audit.export(session, "jsonl"))
        crm: dict[str, Any] = {}
        if self.salesforce is not None:
            crm["salesforce"] = self.salesforce.export()
        if self.hubspot is not None:
            crm["hubspot"] = self.hubspot.export()
        crm["leads"] = {key: {"crm": t.crm, "crm_id": t.crm_id, "team": t.team} for key, t in self.tracked.items()}
        (out / "crm.json").write_text(json.dumps(crm, indent=1, default=str))
        (out / "slack.json").write_text(json.dumps(self.slack.export(), indent=1, default=str))
        (out / "teams.json").write_text(json.dumps(self.teams.export(), indent=1, default=str))
        requests_log = out / "requests.jsonl"
        requests_log.write_text("")
        for emulator in (self.salesforce, self.hubspot, self.slack, self.teams):
            if emulator is not None:
                emulator.log.write_jsonl(requests_log, emulator.service)

    def close(self) -> None:
        web = getattr(self, "web", None)  # absent when `start` failed before it
        if web is not None:
            web.stop()
        for emulator in (self.salesforce, self.hubspot, self.slack, getattr(self, "teams", None)):
            if emulator is not None:
                emulator.stop()
