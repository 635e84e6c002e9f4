"""Outcome rows (seed 002): a small day whose SLA hit rate is recomputed by hand."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import outcomes
from sidecar.engine.evaluator import tick
from sidecar.store.db import transaction
from sidecar.store.models import Lead, LeadOutcome
from tests.pattern_support import feed
from tests.support import add_team, apply_policy, call, context, ny, policy_raw, snapshot

CONTACTED = "Working - Contacted"


def test_outcome_rows_give_the_sla_hit_rate_computed_by_hand(sessions: sessionmaker[Session]) -> None:
    """Four leads at Tue 08:00, 1 h window: A answered at 08:30 and B at 08:40 (on time), C breached at
    09:00 and was called at 09:10 (recovered), D was never answered, reassigned at 09:30 and closed."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    arrivals = {crm_id: snapshot(crm_id, at=ny(24, 8), owner=owner)
                for crm_id, owner in (("A", "r1"), ("B", "r2"), ("C", "r1"), ("D", "r3"))}
    for snap in arrivals.values():
        feed(sessions, ctx, snap)
    feed(sessions, ctx, replace(arrivals["A"], crm_modified_at=ny(24, 8, 30), crm_status=CONTACTED,
                                status_changed_at=ny(24, 8, 30)))
    feed(sessions, ctx, replace(arrivals["B"], crm_modified_at=ny(24, 8, 40), crm_status=CONTACTED,
                                status_changed_at=ny(24, 8, 40), activities=(call("T-B", ny(24, 8, 40)),)))
    tick(sessions, ctx, ny(24, 9, 5).astimezone(UTC))
    feed(sessions, ctx, replace(arrivals["C"], crm_modified_at=ny(24, 9, 10), crm_status=CONTACTED,
                                status_changed_at=ny(24, 9, 10), activities=(call("T-C", ny(24, 9, 10)),)))
    tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))
    with transaction(sessions) as session:
        new_owner = session.scalars(select(Lead.owner_id).where(Lead.crm_id == "D")).one()
    assert new_owner not in (None, "r3")
    feed(sessions, ctx, replace(arrivals["D"], crm_modified_at=ny(24, 10), owner_id=new_owner,
                                crm_status="Closed - Not Converted", status_changed_at=ny(24, 10)))

    with transaction(sessions) as session:
        assert outcomes.refresh(session, ctx.book, ny(24, 10).astimezone(UTC)) == 4
        rows = {row.crm_id: row for row in session.scalars(select(LeadOutcome))}
        assert {k: r.sla_met for k, r in rows.items()} == {"A": True, "B": True, "C": False, "D": False}
        assert {k: r.first_response_s for k, r in rows.items()} == {"A": 1800.0, "B": 2400.0, "C": 4200.0,
                                                                     "D": None}
        assert {k for k, r in rows.items() if r.reminder_fired} == {"C", "D"}
        assert {k for k, r in rows.items() if r.manager_escalated} == {"C", "D"}
        assert {k for k, r in rows.items() if r.reassigned} == {"D"}
        assert {k for k, r in rows.items() if r.recovered_after_escalation} == {"C"}
        assert {k for k, r in rows.items() if r.closed_lost_due_to_delay} == {"D"}
        assert {k for k, r in rows.items() if r.no_response} == {"D"}
        assert {k for k, r in rows.items() if r.contacted} == {"A", "B", "C"}
        assert rows["D"].owner_id == "r3" and rows["D"].window_s == 3600  # who held it during its first window
        # By hand: 2 of 4 first windows met overall; r1 met 1 of 2 (A yes, C no), r2 1 of 1, r3 0 of 1.
        assert outcomes.hit_rates(session, ["market"]) == [(("TEST",), 2, 4)]
        assert outcomes.hit_rates(session, ["owner_id"]) == [(("r1",), 1, 2), (("r2",), 1, 1), (("r3",), 0, 1)]
        assert outcomes.hit_rates(session, ["market", "source", "team_id", "owner_id", "intent"])[0] == (
            ("TEST", "web_form", "us", "r1", "unclear"), 1, 2)
        exported_csv = "".join(outcomes.export(session, "csv"))
        exported_json = json.loads("".join(outcomes.export(session, "json")))
        again = outcomes.refresh(session, ctx.book, ny(25, 10).astimezone(UTC))
        assert again == 4 and "".join(outcomes.export(session, "csv")) == exported_csv  # deterministic
    table = list(csv.DictReader(io.StringIO(exported_csv)))
    assert [r["crm_id"] for r in table] == ["A", "B", "C", "D"]
    assert [r["sla_met"] for r in table] == ["True", "True", "False", "False"]
    assert exported_json[2]["recovered_after_escalation"] is True and exported_json[3]["reassigned"] is True
    # Names beside the ids: the lead's, the first owner's (r3 held D during its first window) and the team's.
    assert [(r["crm_id"], r["lead_name"], r["owner_id"], r["owner_name"], r["team_id"], r["team_name"])
            for r in table][2:] == [("C", "Aisha Al-Mansoori", "r1", "Rep r1", "us", "Team us"),
                                    ("D", "Aisha Al-Mansoori", "r3", "Rep r3", "us", "Team us")]
    assert exported_json[3]["owner_name"] == "Rep r3" and set(exported_json[3]) == set(outcomes.EXPORT_FIELDS)


def test_a_lead_whose_first_window_still_runs_is_not_counted_yet(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    feed(sessions, ctx, snapshot("E", at=ny(24, 8)))
    with transaction(sessions) as session:
        outcomes.refresh(session, ctx.book, ny(24, 8, 10).astimezone(UTC))
        row = session.scalars(select(LeadOutcome)).one()
        assert row.sla_met is None and row.no_response
        assert outcomes.hit_rates(session, ["market"]) == []
