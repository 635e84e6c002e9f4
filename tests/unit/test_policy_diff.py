"""`policy diff` says what changed in every section, in words, never just "states differs"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from sidecar.policy import validate_policy
from sidecar.policy.diff import diff_policies
from sidecar.policy.model import Policy
from tests.conftest import EXAMPLE_POLICY

Raw = dict[str, Any]


def example() -> Raw:
    raw: Raw = yaml.safe_load(EXAMPLE_POLICY.read_text())
    return raw


def edited(edit: Callable[[Raw], None]) -> Policy:
    raw = example()
    edit(raw)
    return validate_policy(raw)


CASES: list[tuple[str, Callable[[Raw], None], str, str]] = [
    ("label", lambda r: r.update(label="2027-Q1"), "label",
     "label '2026-Q4 policy' -> '2027-Q1' (a name only; the version is the content)"),
    ("markets", lambda r: r["markets"]["DACH"].update(tz="Europe/Vienna"), "market.DACH",
     "tz: Europe/Berlin -> Europe/Vienna"),
    ("default_market", lambda r: r.update(default_market="IN"), "default_market",
     "leads without a market are counted in none -> IN"),
    ("states", lambda r: r["states"]["salesforce"]["map"].update({"On Hold": "NEW", "Nurture": "ON_HOLD"}),
     "states.salesforce", "salesforce status 'Nurture' now maps to ON_HOLD; salesforce status 'On Hold' maps "
                          "to NEW instead of ON_HOLD"),
    ("intent", lambda r: r["intent"].update(default="low"), "intent.default",
     "leads no intent rule matches get intent unclear -> low"),
    ("intent", lambda r: r["intent"]["tiers"]["unclear"].update(escalation="review_queue"), "intent.tiers.unclear",
     "escalation: ladder -> review_queue"),
    ("windows", lambda r: r["windows"][3].update(window="12h"), "new.cold_list", "window: 24h -> 12h"),
    ("windows", lambda r: r["windows"].append({"id": "new.dach", "state": "NEW", "market": "DACH", "window": "2h"}),
     "new.dach", "NEW leads (market DACH): progress within 2h of business time"),
    ("ladder", lambda r: r["ladder"][1].update(notify=["manager", "owner"], crm_note=False), "sla.breach",
     "crm_note: on -> off; notify: now also owner"),
    ("stuck", lambda r: r["stuck"].pop(), "stuck.review", ""),
    ("pause_states", lambda r: r.update(pause_states=["COMPLIANCE_HOLD", "QUALIFIED"]), "pause_states",
     "QUALIFIED now pauses clocks; ON_HOLD no longer pauses clocks"),
    ("progress", lambda r: r["progress"].update(NEW=["call_logged", "disqualified"]), "progress.NEW",
     "NEW: email_sent no longer counts as progress; first_response_task_completed no longer counts as progress"),
    ("high_value", lambda r: r["high_value"].update(min_score=90), "high_value", "min_score: 85.0 -> 90.0"),
    ("compliance", lambda r: r["compliance"]["licensed_jurisdictions"].update(DACH=["DE", "AT"]),
     "compliance.hold", "licensed_jurisdictions.DACH: no longer CH"),
    ("churn", lambda r: r["churn"].update(pause_outreach=False), "churn.risk", "pause_outreach: on -> off"),
    ("notifications", lambda r: r["notifications"]["manager"].update(quiet_hours=True), "notify.manager",
     "quiet_hours: off -> on"),
    ("reassignment", lambda r: r["reassignment"].update(strategy="least_loaded"), "reassignment",
     "reassignment strategy round_robin -> least_loaded"),
    ("noise", lambda r: r["noise"].update(max_per_recipient=6, digest=False), "noise",
     "at most 4 warnings per recipient per 15 min -> 6 per 15 min; held warnings are no longer sent as a digest"),
    ("assignment", lambda r: r["assignment"].update(enabled=True), "assignment",
     "initial assignment of unowned leads turned on"),
    ("assignment", lambda r: r["assignment"]["rules"].reverse(), "assignment",
     "assignment rules reordered (the first match wins): assign.us.paid_high, assign.us.default, "
     "assign.in.default -> assign.in.default, assign.us.default, assign.us.paid_high"),
    ("assignment", lambda r: r["assignment"]["rules"][2].update(team="india-b"), "assign.in.default",
     "team: india-inside -> india-b"),
    ("first_response", lambda r: r["first_response"].update(on_reassign="close"), "first_response",
     "on_reassign: reown -> close"),
    ("calibration", lambda r: r.update(calibration={"max_breach_rate": 0.3}), "calibration",
     "max_breach_rate: 0.2 -> 0.3"),
]


@pytest.mark.parametrize(("section", "edit", "rule", "words"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_each_section_is_compared_in_words(section: str, edit: Callable[[Raw], None], rule: str,
                                           words: str) -> None:
    changes = diff_policies(validate_policy(example()), edited(edit))
    assert [c.id for c in changes] == [rule], changes
    assert changes[0].detail == words or (not words and changes[0].change == "removed")


def test_every_section_of_the_policy_has_a_case() -> None:
    assert {case[0] for case in CASES} == set(Policy.model_fields)


def test_no_change_no_lines() -> None:
    assert diff_policies(validate_policy(example()), validate_policy(example())) == []
