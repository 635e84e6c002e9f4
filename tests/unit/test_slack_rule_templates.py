from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.slack.messages import build_message, template_problems
from sidecar.domain import Crm, Persona
from sidecar.ports import LeadContext, Notification
from sidecar.wiring import slack_templates

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 24, 13, 48, tzinfo=UTC)


def note(rule_id: str, kind: str = "sla_breach_imminent") -> Notification:
    lead = LeadContext(crm=Crm.SALESFORCE, crm_id="00Q1", name="Aisha", company="Emirates Group", market="US-East",
                       source="paid_social", intent="high", state="NEW", owner_id="005", owner_name="Ana",
                       record_url="https://x/lightning/r/Lead/00Q1/view")
    return Notification(kind=kind, persona=Persona.OWNER, via="slack_dm", lead=lead, rule_id=rule_id,
                        policy_version="v1", at=AT, due_at=AT + timedelta(minutes=12), elapsed_business_s=2880,
                        window_s=3600, tz="America/New_York", recipient_name="Ana")


def test_example_templates_are_valid_and_a_rules_own_template_wins_over_its_kind() -> None:
    templates = slack_templates(ROOT / "config" / "slack.templates.example.yaml")
    assert template_problems(templates) == []
    own = build_message(note("sla.imminent"), "k", templates)
    other = build_message(note("sla.imminent.paid"), "k", templates)
    assert own.blocks[0]["text"]["text"] == ":warning: SLA breach in 12 minutes: Aisha (Emirates Group, US-East)"
    assert other.blocks[0]["text"]["text"] == ":warning: SLA breach in 12 minutes: Aisha (Emirates Group)"  # default


def test_no_template_file_means_defaults(tmp_path: Path) -> None:
    assert slack_templates(tmp_path / "missing.yaml") == {}
