"""The demo org's people in every system, and the sidecar wired to the emulated systems.

A synthetic rep is one person with a Salesforce user, a HubSpot owner and a Slack account; the
sidecar's directory gets one row per CRM identity, all in the same team. The wiring is the same
code `sidecar run` uses (connectors + ports), pointed at loopback URLs.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import requests
from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.slack import SlackEmulator
from connectors.emulators.synthetic import MARKETS, SyntheticOrg, SynthRep, SynthTeam
from connectors.emulators.teams import TeamsWorkflowsEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.auth import Credentials, HubSpotAuth
from connectors.hubspot.fields import FieldMap as HubSpotFields
from connectors.hubspot.fields import ValueMap
from connectors.hubspot.limits import LimitSettings, RateLimiter
from connectors.hubspot.reader import HubSpotReader
from connectors.hubspot.webhooks import hubspot_webhook_router
from connectors.hubspot.writer import HubSpotWriter
from connectors.salesforce.auth import SalesforceCredentials, connect
from connectors.salesforce.fields import parse_field_map
from connectors.salesforce.outbound import salesforce_outbound_router
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import SalesforceWriter
from connectors.slack.notifier import SlackNotifier, make_client
from connectors.teams.notifier import CHAT_URL_ENV, TeamsNotifier
from sidecar.calendar import BusinessCalendar
from sidecar.directory import Directory, Pto, RepEntry, TeamEntry, add_pto, apply_directory
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.jobs import Runtime
from sidecar.links import RecordLinks
from sidecar.notify_routes import RoutedNotifier
from sidecar.outbox import Ports, RetryPolicy
from sidecar.policy import Policy
from sidecar.ports import CrmReader, CrmWriter
from sidecar.web.app import create_app, intake_callback
from sidecar.web.auth import parse_users
from sidecar.web.visibility import visibility_routers

SALESFORCE_FIELDS = parse_field_map({"lead": {
    "market": {"field": "Market__c"}, "source": {"field": "LeadSource"}, "score": "Lead_Score__c",
    "tier": "Account_Tier__c", "deal_size": "Estimated_Deal_Size__c",
    "flags": {"Sanctions_Match__c": "sanctions_match", "Usage_Drop__c": "usage_drop"}},
    "writer": {"tags": "Sidecar_Tags__c"}}, "demo org")


def hubspot_fields(portal_id: int) -> HubSpotFields:
    return HubSpotFields(portal_id=str(portal_id), market=ValueMap("sales_market"), source=ValueMap("lead_source"),
                         score="lead_score", tier="account_tier", deal_size="expected_deal_size",
                         flags={"sanctions_match": "sanctions_match", "usage_drop": "usage_drop"},
                         tags="sidecar_tags")


class VirtualClockLike(Protocol):
    """What the wiring needs from the demo's clock (see demo.VirtualClock)."""

    def now(self) -> datetime: ...
    def epoch(self) -> float: ...


@dataclass
class Person:
    rep: SynthRep
    tz: str
    calendar: BusinessCalendar
    ids: dict[str, str]  # crm -> user/owner id
    slack_id: str
    pto: list[tuple[date, date]] = field(default_factory=list)

    def user_id(self, crm: str) -> str:
        return self.ids[crm]

    def on_pto(self, now: datetime) -> bool:
        today = now.astimezone(ZoneInfo(self.tz)).date()
        return any(start <= today <= end for start, end in self.pto)

    def add_pto(self, start: date, end: date) -> None:
        self.pto.append((start, end))


class DemoOrg:
    HUBSPOT_APP_SECRET = "demo-app-secret"  # fixture values for the loopback demo, not credentials
    SLACK_TOKEN = "xoxb-emulator"
    FALLBACK_CHANNEL = "#sales-ops"
    # Demo logins for the loopback dashboard (fixture values, printed by `sidecar demo`).
    DASHBOARD_USERS = "viewer:viewer:demo-viewer-token,manager:manager:demo-manager-token,admin:admin:demo-admin-token"

    # The demo's team on Microsoft Teams (the others stay on Slack: an org may mix) and the .env
    # names of its workflow URLs (the emulator's URLs carry a signature like the real ones).
    TEAMS_TEAM_MARKET = "DACH"
    TEAMS_CHANNEL_ENV = "SIDECAR_TEAMS_WORKFLOW_DACH"

    def __init__(self, teams: tuple[SynthTeam, ...], people: dict[str, Person], channels: dict[str, str],
                 workflow_urls: dict[str, str] | None = None) -> None:
        self.teams, self.people, self.channels = teams, people, channels
        self.workflow_urls = workflow_urls or {}  # env var name -> URL; empty: every team on Slack
        self.by_user = {user: person for person in people.values() for user in person.ids.values()}

    @classmethod
    def build(cls, org: SyntheticOrg, salesforce: SalesforceEmulator | None, hubspot: HubSpotEmulator | None,
              slack: SlackEmulator, teams: TeamsWorkflowsEmulator | None = None) -> DemoOrg:
        markets = {spec.code: spec for spec in MARKETS}
        team_market = {team.key: team.market for team in org.teams}
        channels = {team.key: slack.add_channel(team.channel.lstrip("#")) for team in org.teams}
        for name in ("lead-ops-review", "compliance-review", "customer-success", cls.FALLBACK_CHANNEL.lstrip("#")):
            slack.add_channel(name)
        people: dict[str, Person] = {}
        for rep in org.reps:
            spec = markets[team_market.get(rep.team, "US-East")]
            first, _, last = rep.name.partition(" ")
            ids: dict[str, str] = {}
            if salesforce is not None:
                ids["salesforce"] = salesforce.add_user(first, last or first, username=rep.email, email=rep.email)
            if hubspot is not None:
                ids["hubspot"] = hubspot.add_owner(rep.email, first, last, teams=[rep.team] if rep.team else [])
            people[rep.key] = Person(rep, spec.tz, BusinessCalendar(spec.tz, spec.hours), ids,
                                     slack.add_user(rep.email, rep.key, rep.name),
                                     [(day, day) for day in rep.pto])
        urls: dict[str, str] = {}
        if teams is not None:
            urls[CHAT_URL_ENV] = teams.add_workflow("Sidecar chat", kind="chat")
            for team in org.teams:
                if team.market == cls.TEAMS_TEAM_MARKET:
                    urls[cls.TEAMS_CHANNEL_ENV] = teams.add_workflow(f"{team.name} channel", channel=team.name)
        return cls(org.teams, people, channels, urls)

    def on_teams(self, team: SynthTeam) -> bool:
        return team.market == self.TEAMS_TEAM_MARKET and self.TEAMS_CHANNEL_ENV in self.workflow_urls

    def write_directory(self, session: Session, policy: Policy) -> None:
        teams = [TeamEntry(id=team.key, name=team.name, market=team.market,
                           manager=self.people[team.manager].ids.get("salesforce")
                           or next(iter(self.people[team.manager].ids.values())),
                           slack_channel=self.channels[team.key],
                           **({"chat": "teams", "teams_workflow_env": self.TEAMS_CHANNEL_ENV}
                              if self.on_teams(team) else {})) for team in self.teams]
        reps = [RepEntry(id=user, crm=crm, name=person.rep.name, email=person.rep.email,
                         team=person.rep.team or None, role=person.rep.role, seniority=person.rep.seniority,
                         capacity=person.rep.capacity,
                         pto=[Pto(**{"from": start, "to": end}) for start, end in person.pto])
                for person in self.people.values() for crm, user in person.ids.items()]
        apply_directory(session, Directory(teams=teams, reps=reps), policy)

    def add_pto(self, session: Session, key: str, start: date, end: date) -> None:
        """A scripted day off: the person stops acting, and routing stops picking them, in every CRM."""
        person = self.people[key]
        person.add_pto(start, end)
        for user in person.ids.values():
            add_pto(session, user, start, end, person.tz)

    def runtime(self, sessions: sessionmaker[Session], clock: VirtualClockLike,
                salesforce: SalesforceEmulator | None, sf_http: requests.Session | None,
                hubspot: HubSpotEmulator | None, slack: SlackEmulator, seed: int) -> Runtime:
        readers: dict[str, CrmReader] = {}
        writers: dict[str, CrmWriter] = {}
        if salesforce is not None:
            client = connect(SalesforceCredentials(session_id=salesforce.access_token, instance_url=salesforce.url),
                             sf_http)
            readers["salesforce"] = SalesforceReader(client, SALESFORCE_FIELDS, clock=clock.now,
                                                     record_base_url=salesforce.url)
            writers["salesforce"] = SalesforceWriter(client, SALESFORCE_FIELDS)
        if hubspot is not None:
            # Real time for the client's own rate gate: the demo portal's limits are generous.
            limiter = RateLimiter(LimitSettings(per_ten_seconds=100_000, search_per_second=100_000),
                                  time.monotonic, time.sleep)
            api = HubSpotApi(HubSpotAuth(Credentials(DEFAULT_TOKEN, host=hubspot.url)), limiter)
            fields = hubspot_fields(hubspot.portal_id)
            readers["hubspot"] = HubSpotReader(api, fields, clock=clock.now)
            writer = HubSpotWriter(api, fields)
            writer.ensure_properties()
            writers["hubspot"] = writer
        slack_notifier = SlackNotifier(make_client(self.SLACK_TOKEN, base_url=f"{slack.url}/api/"),
                                       self.FALLBACK_CHANNEL, clock=clock.epoch)
        # Same routing as wiring.build_notifier: Slack routes to Slack, Teams routes to the workflows.
        self.teams_notifier = TeamsNotifier(self.workflow_urls.get, allow_http=True)
        notifier = RoutedNotifier({**dict.fromkeys(("slack_dm", "team_channel", "channel"), slack_notifier),
                                   **dict.fromkeys(("teams_chat", "teams_channel"), self.teams_notifier)})
        links = RecordLinks(salesforce.url if salesforce else "https://login.salesforce.com",
                            str(hubspot.portal_id) if hubspot else "0")
        return Runtime(sessions, EngineContext(PolicyBook(), links), readers, Ports(notifier, writers),
                       RetryPolicy(rng=random.Random(seed)))

    def web_app(self, sessions: sessionmaker[Session], clock: VirtualClockLike,
                salesforce: SalesforceEmulator | None, hubspot: HubSpotEmulator | None,
                ctx: EngineContext | None = None) -> FastAPI:
        routers: list[APIRouter] = []
        if ctx is not None:  # the dashboard, on virtual time, with the demo's fixed users
            routers += visibility_routers(sessions, ctx, parse_users(self.DASHBOARD_USERS), None, clock.now)
        if salesforce is not None:
            routers.append(salesforce_outbound_router(salesforce.org_id,
                                                      intake_callback(sessions, "salesforce", clock.now)))
        if hubspot is not None:
            routers.append(hubspot_webhook_router(self.HUBSPOT_APP_SECRET,
                                                  intake_callback(sessions, "hubspot", clock.now),
                                                  clock=clock.epoch, portal_id=str(hubspot.portal_id)))
        return create_app(sessions, routers)
