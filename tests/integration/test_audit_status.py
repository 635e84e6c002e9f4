from __future__ import annotations

import csv
import io
import json
from datetime import UTC, timedelta

from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.engine.evaluator import tick
from sidecar.outbox import Ports, dispatch
from sidecar.ports import PermanentError
from sidecar.status import gather
from sidecar.store.db import transaction
from tests.support import (
    FakeNotifier,
    FakeWriter,
    add_team,
    apply_policy,
    context,
    ingest,
    ny,
    policy_raw,
    snapshot,
)


def run_ladder(sessions: sessionmaker[Session]) -> str:
    ctx = context()
    version = apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot("00QA", at=ny(24, 8)))
    ingest(sessions, ctx, snapshot("00QB", at=ny(24, 9)))
    tick(sessions, ctx, ny(24, 9, 0).astimezone(UTC))  # A: 80 % and 100 % (late), B: nothing yet
    return version


def test_jsonl_export_has_the_documented_keys_and_filters(sessions: sessionmaker[Session]) -> None:
    version = run_ladder(sessions)
    with transaction(sessions) as session:
        rows = [json.loads(line) for line in audit.export(session, "jsonl")]
        only_b = list(audit.export(session, "jsonl", lead_crm_id="00QB"))
        later = list(audit.export(session, "jsonl", since=ny(24, 9, 1).astimezone(UTC)))
    assert [row["kind"] for row in rows] == ["sla_breach_imminent", "sla_breach", "notification_ignored"]
    first = rows[0]
    assert {"at", "lead_id", "crm", "kind", "rule_id", "policy_version", "owner_id", "elapsed_business_s",
            "window_s", "details"} <= first.keys()
    assert (first["lead_id"], first["crm"], first["rule_id"], first["policy_version"], first["owner_id"]) == (
        "00QA", "salesforce", "sla.imminent", version, "r1")
    assert (first["elapsed_business_s"], first["window_s"]) == (3600, 3600)
    assert first["details"]["late"] is True and isinstance(first["details"]["clock_id"], int)
    assert only_b == [] and later == []


def test_csv_export_round_trips(sessions: sessionmaker[Session]) -> None:
    run_ladder(sessions)
    with transaction(sessions) as session:
        text = "".join(audit.export(session, "csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["kind"] for row in rows] == ["sla_breach_imminent", "sla_breach", "notification_ignored"]
    assert json.loads(rows[1]["details"])["fraction"] == 1.0


def test_status_counts_clocks_due_soon_and_dead_effects(sessions: sessionmaker[Session]) -> None:
    run_ladder(sessions)
    now = ny(24, 9, 0).astimezone(UTC)
    dispatch(sessions, Ports(FakeNotifier(fail_with=[PermanentError("invite the bot to #sales-us")]),
                             {"salesforce": FakeWriter()}), now)
    with transaction(sessions) as session:
        report = gather(session, now)
        later = gather(session, now + timedelta(hours=2))
    assert (report.open_clocks, report.paused_clocks) == (2, 0)
    assert report.due_next_hour == 2  # A's 150 % at 09:30 and B's 80 % at 09:48
    assert report.outbox == {"dead": 1, "done": 2}
    assert report.dead[0][2] == "invite the bot to #sales-us"
    assert later.due_next_hour == 2
