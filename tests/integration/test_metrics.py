"""/metrics parsed as Prometheus exposition text: every family the issue names is there, well formed,
with figures checked by hand on a small morning (a late tick, webhook answers, API calls)."""

from __future__ import annotations

import itertools
import warnings
from datetime import UTC

from fastapi import APIRouter, HTTPException
from sqlalchemy.orm import Session, sessionmaker

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from sidecar import metrics
from sidecar.engine.evaluator import tick
from sidecar.meters import METERS, Meters
from sidecar.store.db import transaction
from sidecar.web.app import create_app
from tests.support import add_team, apply_policy, context, ingest, ny, parse_exposition, policy_raw, snapshot


def test_every_family_is_there_and_the_lag_histogram_counts_a_late_tick(sessions: sessionmaker[Session]) -> None:
    """A at 08:00 on a 1 h window: the 80 % step is due 08:48 but the tick runs at 08:50 (120 s late);
    the breach is due 09:00 and fires on time. B arrives 09:00: one NEW clock still open."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 8, 50).astimezone(UTC))
    ingest(sessions, ctx, snapshot("00QB", at=ny(24, 9)))
    tick(sessions, ctx, ny(24, 9, 0).astimezone(UTC))
    meters = Meters()
    for _ in range(3):
        meters.api_call("salesforce", (1_200, 100_000))
    meters.api_call("hubspot")  # no quota header seen yet: calls, but no quota sample
    meters.webhook("/webhooks/salesforce", 200)
    meters.webhook("/webhooks/salesforce", 200)
    meters.webhook("/webhooks/hubspot", 401)
    with transaction(sessions) as session:
        types, samples = parse_exposition(metrics.render(session, ny(24, 9, 0).astimezone(UTC), meters))
    assert types == {
        "sidecar_open_clocks": "gauge", "sidecar_steps_fired_total": "counter", "sidecar_outbox_effects": "gauge",
        "sidecar_outbox_dead_letters": "gauge", "sidecar_poll_age_seconds": "gauge",
        "sidecar_webhook_intake_waiting": "gauge", "sidecar_step_firing_lag_seconds": "histogram",
        "sidecar_crm_api_calls_total": "counter", "sidecar_crm_api_quota_remaining": "gauge",
        "sidecar_crm_api_quota_limit": "gauge", "sidecar_webhook_requests_total": "counter",
        "sidecar_outbox_oldest_pending_seconds": "gauge"}
    sla = frozenset({("pattern", "sla")})
    buckets = {dict(key)["le"]: value for key, value in samples["sidecar_step_firing_lag_seconds_bucket"].items()
               if ("pattern", "sla") in key}
    assert (buckets["60"], buckets["120"], buckets["+Inf"]) == (1, 2, 2)  # on time, and 120 s late
    assert samples["sidecar_step_firing_lag_seconds_sum"][sla] == 120
    assert samples["sidecar_step_firing_lag_seconds_count"][sla] == 2
    bounds = sorted((float(le), n) for le, n in buckets.items() if le != "+Inf")
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(bounds))  # cumulative
    assert samples["sidecar_open_clocks"][frozenset({("kind", "sla"), ("status", "open"), ("state", "NEW")})] == 2
    assert samples["sidecar_steps_fired_total"][frozenset({("pattern", "sla"), ("action", "notify")})] == 2
    assert samples["sidecar_crm_api_calls_total"] == {frozenset({("crm", "salesforce")}): 3,
                                                     frozenset({("crm", "hubspot")}): 1}
    assert samples["sidecar_crm_api_quota_remaining"] == {frozenset({("crm", "salesforce")}): 98_800}
    assert samples["sidecar_crm_api_quota_limit"] == {frozenset({("crm", "salesforce")}): 100_000}
    assert samples["sidecar_webhook_requests_total"] == {
        frozenset({("route", "/webhooks/salesforce"), ("status", "200")}): 2,
        frozenset({("route", "/webhooks/hubspot"), ("status", "401")}): 1}
    assert samples["sidecar_outbox_dead_letters"] == {frozenset(): 0}


def test_webhook_answers_are_counted_by_route_and_status_including_refusals(
        sessions: sessionmaker[Session]) -> None:
    receiver = APIRouter()

    @receiver.post("/webhooks/fake", status_code=204)
    def fake(signed: bool = True) -> None:
        if not signed:
            raise HTTPException(401, "bad signature")

    client = TestClient(create_app(sessions, [receiver], max_body_bytes=100))
    before = METERS.snapshot()[2]
    assert client.post("/webhooks/fake").status_code == 204
    assert client.post("/webhooks/fake", params={"signed": False}).status_code == 401
    assert client.post("/webhooks/fake", content=b"x" * 101).status_code == 413  # the body limit, outside the app
    assert client.post("/webhooks/nothing-here").status_code == 404
    assert client.get("/healthz").status_code == 200  # not a webhook: not counted
    after = METERS.snapshot()[2]
    grown = {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)}
    assert grown == {("/webhooks/fake", 204): 1, ("/webhooks/fake", 401): 1, ("/webhooks/fake", 413): 1,
                     ("other", 404): 1}
