"""A scripted morning (config/scenarios/paid-social-morning.yaml) replayed, with its emulators kept up and
the dashboard, API and /metrics served on the demo's virtual clock: what the visibility tests look at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from connectors.emulators.demo import Demo, DemoOptions
from connectors.emulators.scenario import load_scenario
from sidecar.store.db import transaction
from sidecar.store.models import Lead
from sidecar.web.app import BackgroundServer, create_app
from sidecar.web.auth import parse_users
from sidecar.web.visibility import visibility_routers
from tests.conftest import ROOT

SCENARIO = ROOT / "config" / "scenarios" / "paid-social-morning.yaml"


@dataclass
class Morning:
    demo: Demo
    url: str

    def lead_id(self, name: str) -> str:
        with transaction(self.demo.sessions) as session:
            lead = session.query(Lead).filter(Lead.name == name).one()
            return lead.crm_id


def serve_morning(workdir: Path) -> Iterator[Morning]:
    demo = Demo(DemoOptions(crm="salesforce", scenario=load_scenario(SCENARIO), duration=timedelta(hours=4)), workdir)
    try:
        demo.run()
        users = parse_users(demo.org.DASHBOARD_USERS)
        app = create_app(demo.sessions, visibility_routers(demo.sessions, demo.runtime.ctx, users, "test-secret",
                                                           demo.clock.now))
        web = BackgroundServer(app)
        url = web.start()
        try:
            yield Morning(demo, url)
        finally:
            web.stop()
    finally:
        demo.close()
