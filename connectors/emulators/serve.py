"""`python -m connectors.emulators.serve`: the real `sidecar run` against loopback emulators of
HubSpot and Slack, on real time. What `docker compose up` runs by default (compose.yaml), so the image,
the database (PostgreSQL in compose) and the deployment can be tried without any account.

Unlike `sidecar demo` (virtual time, its own SQLite file, the connectors wired by hand), this builds
everything from settings exactly as `sidecar run` does (`sidecar.service.run`): only the CRM and
Slack endpoints and credentials are replaced by the emulators'. The emulators listen on loopback
inside the same process; the only port reachable from outside is the sidecar's own
(SIDECAR_WEB_PORT on SIDECAR_WEB_HOST). The emulated portal gets the demo org's owners, teams and
Slack users, and `--leads N` new contacts at start-up (owners round robin) that nobody works: they
warn their owner at 80 % of their window and escalate from there, as in a real org. Changes reach
the sidecar by polling (the emulator delivers webhooks only when asked to, as in the demo).
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from connectors.emulators.demo_org import DemoOrg
from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.emulators.slack import SlackEmulator
from connectors.emulators.synthetic import generate
from sidecar import logs, service, wiring
from sidecar.policy import load_policy
from sidecar.policy.version import active_version, record_version
from sidecar.settings import Settings
from sidecar.store.db import make_engine, migrate, session_factory, transaction

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"
MARKET_COUNTRY = {"IN": "India", "US-East": "United States", "DACH": "Germany"}  # the example field map's values
log = logging.getLogger("sidecar.emulated")


def wall_clock() -> datetime:
    return datetime.now(UTC)  # this is an entry point, like the CLI: the one place that reads it


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1, help="same seed, same org")
    parser.add_argument("--leads", type=int, default=12, help="new contacts created at start-up")
    args = parser.parse_args(argv)
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    policy_path = settings.policy_file if settings.policy_file.exists() else EXAMPLE_POLICY
    policy = load_policy(policy_path)
    with transaction(sessions) as session:
        if active_version(session) is None:
            record_version(session, policy, str(policy_path), wall_clock() - timedelta(days=1))

    slack, hubspot = SlackEmulator(args.seed, wall_clock), HubSpotEmulator(args.seed, wall_clock)
    slack.start()
    hubspot.start()
    synthetic = generate(args.seed, wall_clock(), timedelta(days=1))
    org = DemoOrg.build(synthetic, None, hubspot, slack)
    with transaction(sessions) as session:
        org.write_directory(session, policy)
    settings = settings.model_copy(update={
        "hubspot_access_token": SecretStr(DEFAULT_TOKEN), "hubspot_api_base": hubspot.url,
        "hubspot_portal_id": str(hubspot.portal_id), "hubspot_app_secret": SecretStr(DemoOrg.HUBSPOT_APP_SECRET),
        "slack_bot_token": SecretStr(DemoOrg.SLACK_TOKEN), "slack_api_base": f"{slack.url}/api/",
        "slack_fallback_channel": DemoOrg.FALLBACK_CHANNEL,
        # Salesforce stays off: its emulator speaks TLS with a throwaway CA the image does not trust.
        "sf_username": None, "sf_client_id": None, "sf_session_id": None, "sf_organization_id": None})
    wiring.ensure_hubspot_properties(settings)
    owners = [person for person in org.people.values() if person.rep.role != "manager"]
    for index, lead in enumerate(synthetic.leads[:args.leads]):
        owner = owners[index % len(owners)]
        hubspot.insert("contacts", {
            "firstname": lead.first_name, "lastname": lead.last_name, "company": lead.company, "email": lead.email,
            "hs_lead_status": "NEW", "hubspot_owner_id": owner.user_id("hubspot"),
            "country": MARKET_COUNTRY.get(lead.market, lead.market)})
    log.info("emulated HubSpot portal %s and Slack workspace on loopback: %s owners, %s new contacts",
             hubspot.portal_id, len(org.people), min(args.leads, len(synthetic.leads)))
    try:
        service.run(settings, sessions, wall_clock)
    finally:
        hubspot.stop()
        slack.stop()


if __name__ == "__main__":
    main()
