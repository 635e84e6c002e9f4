"""The composition root: with sidecar.wiring_demo, the only module of `sidecar` that imports connectors and SDKs.

It turns settings into ports (CRM readers and writers, the Slack notifier) and the web receivers
into routers, and reaches the connectors for `sidecar check`. The demo and scenario replays, which
import the emulators, are in sidecar.wiring_demo.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.jobs import Runtime
from sidecar.links import RecordLinks
from sidecar.notify_routes import RoutedNotifier
from sidecar.outbox import Ports, RetryPolicy
from sidecar.ports import CrmReader, CrmWriter, Notifier
from sidecar.settings import Settings
from sidecar.web.app import intake_callback

CONFIG = Path("config")
log = logging.getLogger(__name__)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _sf_credentials(settings: Settings) -> Any:
    from connectors.salesforce.auth import SalesforceCredentials

    return SalesforceCredentials(
        username=settings.sf_username, password=_secret(settings.sf_password),
        security_token=_secret(settings.sf_security_token), client_id=settings.sf_client_id,
        client_secret=_secret(settings.sf_client_secret), session_id=_secret(settings.sf_session_id),
        instance_url=settings.sf_instance_url, domain=settings.sf_domain)


def _sf_fields() -> Any:
    from connectors.salesforce.fields import FieldMap, load_field_map

    path = CONFIG / "salesforce.fields.yaml"
    return load_field_map(path) if path.exists() else FieldMap()


def _hubspot_api(settings: Settings, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Any:
    from connectors.hubspot.api import HubSpotApi
    from connectors.hubspot.auth import Credentials, HubSpotAuth
    from connectors.hubspot.limits import LimitSettings, RateLimiter

    return HubSpotApi(HubSpotAuth(Credentials(_secret(settings.hubspot_access_token) or "",
                                              host=settings.hubspot_api_base)),
                      RateLimiter(LimitSettings(), monotonic, sleep))


def _hubspot_fields() -> Any:
    from connectors.hubspot.fields import FieldMap, load_field_map

    path = CONFIG / "hubspot.fields.yaml"
    return load_field_map(path) if path.exists() else FieldMap()


def has_salesforce(settings: Settings) -> bool:
    return bool(settings.sf_username or settings.sf_client_id or settings.sf_session_id)


def check_connections(settings: Settings) -> list[tuple[str, bool, str]]:
    """(system, ok, message) for each configured CRM and Slack: credentials, scopes, fields."""
    results: list[tuple[str, bool, str]] = []
    if has_salesforce(settings):
        from connectors.salesforce.auth import check_credentials, connect
        from connectors.salesforce.fields import missing_fields

        message = check_credentials(_sf_credentials(settings))
        results.append(("salesforce", message.startswith("ok"), message))
        if message.startswith("ok"):
            missing = missing_fields(connect(_sf_credentials(settings)), _sf_fields())
            results += [("salesforce", False, problem) for problem in missing]
    if settings.hubspot_access_token:
        from connectors.hubspot.auth import check_access
        from connectors.hubspot.fields import missing_properties

        api = _hubspot_api(settings)
        problems = check_access(api)
        results += [("hubspot", False, problem) for problem in problems]
        if not problems:
            from connectors.hubspot.writer import HubSpotWriter

            missing_props = missing_properties(api, _hubspot_fields())
            results += [("hubspot", False, problem) for problem in missing_props]
            # How each task/note key keeps creates exactly once (unique only where the portal enforces it).
            results += [("hubspot", ok, message) for ok, message in HubSpotWriter(api, _hubspot_fields()).key_checks()]
            results.append(("hubspot", True, "ok: token can read contacts and owners"))
    if settings.slack_bot_token:
        from slack_sdk.errors import SlackApiError

        from connectors.slack.notifier import make_client

        try:
            info = make_client(_secret(settings.slack_bot_token) or "", settings.slack_api_base).auth_test()
            results.append(("slack", True, f"ok: bot {info.get('user')} in workspace {info.get('team')}"))
        except SlackApiError as exc:
            results.append(("slack", False, f"SIDECAR_SLACK_BOT_TOKEN refused: {exc.response.get('error')} "
                                            "(reinstall the Slack app and copy its Bot User OAuth Token)"))
    if settings.teams_chat_workflow_url:  # check_system("teams") also checks the directory's teams
        from connectors.teams.check import check_workflows

        results += [("teams", ok, message) for ok, message in check_workflows(teams_targets(settings))]
    return results


def ensure_hubspot_properties(settings: Settings) -> list[str]:
    """Create the sidecar's idempotency-key property on HubSpot tasks and notes (harmless twice)."""
    from connectors.hubspot.writer import HubSpotWriter

    created: list[str] = HubSpotWriter(_hubspot_api(settings), _hubspot_fields()).ensure_properties()
    return created


def slack_templates(path: Path = CONFIG / "slack.templates.yaml") -> dict[str, str]:
    """Message templates an admin overrides per rule or kind (see config/slack.templates.example.yaml)."""
    import yaml

    return {str(k): str(v) for k, v in (yaml.safe_load(path.read_text()) or {}).items()} if path.exists() else {}


def build_runtime(settings: Settings, sessions: sessionmaker[Session], *,
                  monotonic: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Runtime:
    """Ports for every CRM and Slack workspace the settings configure. `monotonic` and `sleep` pace
    the HubSpot rate limiter: the wall clock in `sidecar run`, a virtual one against the emulators.
    `clock` is the connectors' own notion of now (poll windows, write settle times): the jobs' clock."""
    readers: dict[str, CrmReader] = {}
    writers: dict[str, CrmWriter] = {}
    links = RecordLinks()
    sf_client = None
    if has_salesforce(settings):
        from connectors.salesforce.auth import connect
        from connectors.salesforce.reader import SalesforceReader
        from connectors.salesforce.writer import SalesforceWriter

        # The login waits for the first poll: a Salesforce that is down (or refuses the login) at
        # start is then one failing job, retried with backoff and shown by /readyz, while the
        # webhook receivers and the other CRM run. It used to stop `sidecar run` right here.
        sf_client = client = connect(_sf_credentials(settings), defer_login=True)
        fields = _sf_fields()
        readers["salesforce"] = SalesforceReader(client, fields, clock=clock)
        writers["salesforce"] = SalesforceWriter(client, fields)
        base = client.instance_url if client.logged_in else settings.sf_instance_url or links.salesforce_base
        links = RecordLinks(base, links.hubspot_portal_id)
    if settings.hubspot_access_token:
        from connectors.hubspot.reader import HubSpotReader
        from connectors.hubspot.writer import HubSpotWriter

        api, hs_fields = _hubspot_api(settings, monotonic, sleep), _hubspot_fields()
        readers["hubspot"] = HubSpotReader(api, hs_fields, clock=clock)
        writers["hubspot"] = HubSpotWriter(api, hs_fields, clock=clock)
        links = RecordLinks(links.salesforce_base, settings.hubspot_portal_id or hs_fields.portal_id,
                            hs_fields.type_id)
    notifier = build_notifier(settings)
    ctx = EngineContext(PolicyBook(), links)
    if sf_client is not None and not sf_client.logged_in:  # record links name the org once it is known
        sf_client.on_login = lambda url: setattr(ctx, "links", replace(ctx.links, salesforce_base=url))
    return Runtime(sessions, ctx, readers, Ports(notifier, writers),
                   RetryPolicy(rng=random.Random()),  # noqa: S311 - retry jitter, not security
                   directory_file=settings.directory_file, lease=timedelta(seconds=settings.outbox_lease_seconds),
                   clock=clock)


SLACK_ROUTES = ("slack_dm", "team_channel", "channel")
TEAMS_ROUTES = ("teams_chat", "teams_channel")


def build_notifier(settings: Settings) -> Notifier:
    """Slack serves the Slack routes (when a bot token is set), Teams Workflows the Teams routes."""
    from connectors.teams.notifier import TeamsNotifier
    from connectors.teams.targets import env_reader

    slack: Notifier | None = None
    if settings.slack_bot_token:
        from connectors.slack.notifier import SlackNotifier, make_client

        slack = SlackNotifier(make_client(_secret(settings.slack_bot_token) or "", settings.slack_api_base),
                              settings.slack_fallback_channel, templates=slack_templates())
    teams = TeamsNotifier(env_reader(_secret(settings.teams_chat_workflow_url)), templates=slack_templates(),
                          dashboard_base=settings.public_url)
    by_route: dict[str, Notifier] = dict.fromkeys(TEAMS_ROUTES, teams)
    if slack is not None:
        by_route.update(dict.fromkeys(SLACK_ROUTES, slack))
    return RoutedNotifier(by_route, dict.fromkeys(SLACK_ROUTES, "set SIDECAR_SLACK_BOT_TOKEN (or put the team "
                                                               "on Teams in the directory)"))


def teams_targets(settings: Settings) -> list[tuple[str, str, str | None]]:
    """(what it serves, env var name, value) of each Teams workflow the directory and settings need."""
    from connectors.teams.targets import env_reader, workflow_targets

    return workflow_targets(settings.directory_file, env_reader(_secret(settings.teams_chat_workflow_url)))


def web_routers(settings: Settings, sessions: sessionmaker[Session], ctx: EngineContext,
                clock: Callable[[], datetime] | None = None,
                on_stored: Callable[[], None] | None = None) -> list[APIRouter]:
    """The webhook receivers, Slack buttons and admin API for whatever is configured. `on_stored`:
    called when a webhook stored new lead ids (rings the drain's doorbell, see sidecar.doorbell)."""
    now: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))  # the web layer's clock: the jobs' one
    routers: list[APIRouter] = []
    if settings.sf_organization_id:
        from connectors.salesforce.outbound import salesforce_outbound_router

        routers.append(salesforce_outbound_router(settings.sf_organization_id,
                                                  intake_callback(sessions, "salesforce", now, on_stored)))
    if settings.hubspot_app_secret:
        from connectors.hubspot.webhooks import hubspot_webhook_router

        hs_fields = _hubspot_fields()
        # Events of any other portal are refused; "0" is the field map's "not set".
        portal = settings.hubspot_portal_id or (hs_fields.portal_id if hs_fields.portal_id != "0" else None)
        routers.append(hubspot_webhook_router(_secret(settings.hubspot_app_secret) or "",
                                              intake_callback(sessions, "hubspot", now, on_stored),
                                              public_base_url=settings.public_url,
                                              object_type_id=hs_fields.type_id, portal_id=portal))
    if settings.slack_signing_secret:
        from connectors.slack.actions import slack_actions_router

        routers.append(slack_actions_router(_secret(settings.slack_signing_secret) or "",
                                            slack_action_handler(sessions, ctx, settings, now)))
    if settings.admin_token:
        from sidecar.web.admin import admin_router

        routers.append(admin_router(sessions, ctx, _secret(settings.admin_token) or "", now))
    from sidecar.web.auth import parse_users
    from sidecar.web.visibility import visibility_routers

    users = parse_users(_secret(settings.dashboard_users) or "", _secret(settings.admin_token))
    routers += visibility_routers(sessions, ctx, users, _secret(settings.dashboard_secret), now, settings.public_url)
    if settings.signals_token or settings.admin_token:
        from sidecar.web.signals import signals_router

        token = _secret(settings.signals_token or settings.admin_token) or ""
        routers.append(signals_router(sessions, ctx, token, now))
    return routers


def slack_action_handler(sessions: sessionmaker[Session], ctx: EngineContext, settings: Settings,
                         clock: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep
                         ) -> Callable[[Any], None]:
    """Slack button click -> who clicked -> the core's decision -> a reply posted to response_url.
    Runs after the click was acknowledged (connectors.slack.actions); see connectors.slack.clicks."""
    from connectors.slack.actions import ActionReply, SlackAction
    from connectors.slack.clicks import Clicker, ClickWorker
    from connectors.slack.notifier import make_client
    from sidecar.actions import handle_action, is_linked

    token = _secret(settings.slack_bot_token)

    def decide(action: SlackAction, clicker: Clicker) -> ActionReply:
        outcome = handle_action(sessions, ctx, action_id=action.action_id, crm=action.crm, crm_id=action.crm_id,
                                idempotency_key=action.idempotency_key, slack_user_id=action.user_id,
                                slack_user_email=clicker.email, lookup_failed=clicker.lookup_failed, now=clock())
        return ActionReply(outcome.text, outcome.ephemeral)

    return ClickWorker(decide, is_linked=lambda user_id: is_linked(sessions, user_id),
                       client=make_client(token, settings.slack_api_base) if token else None, sleep=sleep)


def backfill_salesforce(settings: Settings, sessions: sessionmaker[Session], since: datetime | None,
                        progress: Callable[[int, int], None], clock: Callable[[], datetime]) -> Any:
    """Backfill Salesforce leads page by page; each page commits with its cursor, like a poll."""
    from connectors.salesforce.auth import connect
    from connectors.salesforce.backfill import backfill
    from sidecar.sync import PollStats, apply_page

    if not has_salesforce(settings):
        raise ValueError("no Salesforce credentials configured (see .env.example)")
    client, stats = connect(_sf_credentials(settings)), PollStats()
    ctx = EngineContext(PolicyBook(), RecordLinks(client.instance_url))
    return backfill(client, _sf_fields(), since,
                    lambda page: apply_page(sessions, ctx, "salesforce", page, stats, clock()), progress,
                    clock=clock)


# --- `sidecar check` (sidecar/preflight.py runs the steps; these reach the connectors for it) ---

_ENABLES = {"salesforce": ("sf_username", "sf_client_id", "sf_session_id"),
            "hubspot": ("hubspot_access_token",), "slack": ("slack_bot_token",),
            "teams": ("teams_chat_workflow_url",)}


def configured_systems(settings: Settings) -> list[str]:
    """The CRMs and Slack workspace the settings configure, in check order."""
    systems = [system for system, names in _ENABLES.items()
               if system != "teams" and any(getattr(settings, n) for n in names)]
    return systems + (["teams"] if teams_targets(settings) else [])  # also when only the directory needs it


def check_system(settings: Settings, system: str) -> list[tuple[bool, str]]:
    """`check_connections` for one system only, so that one unreachable API cannot hide the others'
    results (the caller turns an exception here into that system's one line)."""
    if system == "teams":
        from connectors.teams.check import check_workflows

        return check_workflows(teams_targets(settings))
    others = {name: None for other, names in _ENABLES.items() if other != system for name in names}
    return [(ok, message) for checked, ok, message in check_connections(settings.model_copy(update=others))
            if checked == system]


def config_file_problems(name: str, path: Path) -> list[str]:
    """What the connector reading `path` refuses in it ('salesforce.fields', 'hubspot.fields',
    'slack.templates'): one message per problem, [] when it would load."""
    if name == "slack.templates":
        from connectors.slack.messages import template_problems

        return template_problems(slack_templates(path))
    from connectors.hubspot.fields import load_field_map as hubspot_map
    from connectors.salesforce.fields import load_field_map as salesforce_map

    try:
        (salesforce_map if name == "salesforce.fields" else hubspot_map)(path)
    except ValueError as exc:
        return [line.removeprefix(f"{path}: ") for line in str(exc).splitlines()]
    return []


def webhook_endpoints() -> list[tuple[str, str]]:
    """(what the admin configures, path) for each receiver `web_routers` mounts (a test keeps them in step)."""
    return [("Salesforce Outbound Message endpoint URL", "/webhooks/salesforce"),
            ("HubSpot webhook target URL", "/webhooks/hubspot"),
            ("Slack interactivity request URL", "/slack/actions")]
