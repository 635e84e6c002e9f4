"""Block Kit rendering: exact phrases, local times per market, buttons, templates and Slack's limits."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.slack.messages import (
    DEFAULT_TEMPLATES,
    build_message,
    clip,
    deadline_phrase,
    humanize,
    local_time,
    template_problems,
)
from connectors.teams.cards import card
from sidecar.domain import Crm, Persona
from sidecar.ports import LeadContext, Notification

AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)  # Monday 10:00 in Kolkata, Sunday 23:30 in New York
SF_URL = "https://acme.my.salesforce.com/lightning/r/Lead/00Q5e000001/view"
HS_URL = "https://app.hubspot.com/contacts/4242/record/0-1/901"


def lead(crm: Crm = Crm.SALESFORCE, **changes: Any) -> LeadContext:
    base = LeadContext(crm=crm, crm_id="00Q5e000001" if crm is Crm.SALESFORCE else "901", name="Priya Nair",
                       company="Nimbus Labs", market="IN", source="paid_social", intent="high", state="NEW",
                       owner_id="005A1", owner_name="Ana Lima",
                       record_url=SF_URL if crm is Crm.SALESFORCE else HS_URL)
    return replace(base, **changes)


def note(kind: str = "sla_breach_imminent", **changes: Any) -> Notification:
    base = Notification(kind=kind, persona=Persona.OWNER, via="slack_dm", lead=lead(), rule_id="sla.imminent",
                        policy_version="3f9a1c2 (2026-Q4 policy)", at=AT, due_at=AT + timedelta(minutes=12),
                        elapsed_business_s=3900, window_s=3600 * 4, tz="Asia/Kolkata",
                        recipient_email="ana@nimbus.example", recipient_name="Ana Lima")
    return replace(base, **changes)


def block(blocks: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(b for b in blocks if b["type"] == kind)


def fields(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """'*Label*\\nvalue' fields as {label: value}."""
    pairs = (f["text"].split("\n", 1) for b in blocks if "fields" in b for f in b["fields"])
    return {label.strip("*"): value for label, value in pairs}


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for e in block(blocks, "actions")["elements"]}


def header(blocks: list[dict[str, Any]]) -> str:
    return str(block(blocks, "header")["text"]["text"])


@pytest.mark.parametrize(("seconds", "phrase"), [
    (0, "less than a minute"), (29, "less than a minute"), (60, "1 minute"), (720, "12 minutes"),
    (2100, "35 minutes"), (3600, "1 h"), (3900, "1 h 5 min"), (3 * 86400 + 7200, "3 d 2 h"),
    (-720, "12 minutes"),
])
def test_humanize(seconds: float, phrase: str) -> None:
    assert humanize(seconds) == phrase


def test_deadline_phrase_before_at_and_after_the_deadline() -> None:
    assert deadline_phrase(AT, AT + timedelta(minutes=12)) == "SLA breach in 12 minutes"
    assert deadline_phrase(AT, AT - timedelta(minutes=35)) == "overdue by 35 minutes"
    assert deadline_phrase(AT, AT + timedelta(minutes=65)) == "SLA breach in 1 h 5 min"
    assert deadline_phrase(AT, AT) == "SLA breach now"


def test_imminent_dm_to_owner_salesforce() -> None:
    msg = build_message(note(), "key-1")
    assert header(msg.blocks) == ":warning: SLA breach in 12 minutes: Priya Nair (Nimbus Labs)"
    assert fields(msg.blocks) == {
        "Lead": "Priya Nair", "Company": "Nimbus Labs", "Market": "IN", "Source": "paid_social",
        "Intent": "high", "State": "NEW", "Owner": "Ana Lima", "Waiting": "1 h 5 min (business time)",
        "Deadline": "10:12 IST · SLA breach in 12 minutes",
    }
    intro = msg.blocks[1]["text"]["text"]
    assert intro == ("Ana Lima, this lead has waited *1 h 5 min* of business time. "
                     "Contact it before 10:12 IST to stay inside the SLA.")
    link = buttons(msg.blocks)["open_record"]
    assert (link["url"], link["text"]["text"]) == (SF_URL, "Open in Salesforce")
    ack = buttons(msg.blocks)["ack"]
    assert ack["text"]["text"] == "I'm on it"
    assert json.loads(ack["value"]) == {"crm": "salesforce", "crm_id": "00Q5e000001", "key": "key-1"}
    assert set(buttons(msg.blocks)) == {"open_record", "ack"}  # no snooze unless allowed
    assert msg.text.startswith(":warning: SLA breach in 12 minutes: Priya Nair (Nimbus Labs) — NEW")
    assert msg.text.endswith(f"<{SF_URL}|Open in Salesforce>")


def test_owner_field_is_the_leads_owner_even_in_a_managers_dm() -> None:
    msg = build_message(note(persona=Persona.MANAGER, recipient_name="Mia Rao"), "k")
    assert fields(msg.blocks)["Owner"] == "Ana Lima"
    assert msg.blocks[1]["text"]["text"].startswith("Mia Rao, this lead has waited")


def test_hubspot_link_and_snooze_button() -> None:
    msg = build_message(note(lead=lead(Crm.HUBSPOT), extra={"snooze_allowed": True}), "key-2")
    link = buttons(msg.blocks)["open_record"]
    assert (link["url"], link["text"]["text"]) == (HS_URL, "Open in HubSpot")
    snooze = buttons(msg.blocks)["snooze_15"]
    assert json.loads(snooze["value"]) == {"crm": "hubspot", "crm_id": "901", "key": "key-2"}


def test_context_names_rule_and_policy_version() -> None:
    context = block(build_message(note(), "k").blocks, "context")["elements"][0]["text"]
    assert context == "Rule `sla.imminent` · policy `3f9a1c2 (2026-Q4 policy)` · sla_breach_imminent"


@pytest.mark.parametrize(("tz", "due", "since"), [
    ("Asia/Kolkata", "10:12 IST", "NEW since 08:00 IST"),
    # New York is still on Sunday evening: same instants, other clock times (and the previous day).
    ("America/New_York", "23:42 EST", "NEW since 21:30 EST"),
])
def test_times_in_the_teams_zone(tz: str, due: str, since: str) -> None:
    n = note(tz=tz, extra={"state_since": (AT - timedelta(hours=2)).isoformat()})
    facts = fields(build_message(n, "k").blocks)
    assert facts["Deadline"] == f"{due} · SLA breach in 12 minutes"
    assert facts["State"] == since


def test_time_on_another_local_day_shows_the_date() -> None:
    # 23:30 EST Sunday -> deadline 00:10 EST Monday: the day must be spelled out.
    n = note(tz="America/New_York", due_at=AT + timedelta(minutes=40))
    deadline = fields(build_message(n, "k").blocks)["Deadline"]
    assert deadline == "Mon 02 Mar 00:10 EST · SLA breach in 40 minutes"
    assert local_time(AT, "Asia/Kolkata", AT) == "10:00 IST"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        local_time(datetime(2026, 3, 2, 4, 30), "Asia/Kolkata", AT)


def test_breach_for_the_team_is_overdue() -> None:
    n = note("sla_breach", persona=Persona.MANAGER, via="team_channel", channel="C1", rule_id="sla.breach",
             due_at=AT - timedelta(minutes=35), recipient_email=None, recipient_name=None)
    msg = build_message(n, "k")
    assert header(msg.blocks) == ":rotating_light: SLA breached: Priya Nair (Nimbus Labs)"
    assert msg.blocks[1]["text"]["text"] == ("Priya Nair has waited *1 h 5 min* of business time and is "
                                             "*overdue by 35 minutes*. Owner: Ana Lima.")
    assert "revert_reassignment" not in buttons(msg.blocks)


def test_reassignment_to_team_has_revert_button_and_names_both_owners() -> None:
    extra = {"new_owner_name": "Bo Chen", "from_owner_name": "Ana Lima",
             "reason": "no contact in 1.5x window"}
    n = note("sla_breach_auto_reassign", persona=Persona.MANAGER, via="team_channel", channel="C1",
             due_at=AT - timedelta(minutes=30), extra=extra, reassignment=True)
    msg = build_message(n, "k-r")
    assert header(msg.blocks) == ":arrows_counterclockwise: Reassigned to Bo Chen: Priya Nair (Nimbus Labs)"
    assert msg.blocks[1]["text"]["text"] == ("Priya Nair moved from Ana Lima to *Bo Chen* after 1 h 5 min of "
                                             "business time (overdue by 30 minutes). "
                                             "Reason: no contact in 1.5x window.")
    assert fields(msg.blocks)["Owner"] == "Bo Chen"
    revert = buttons(msg.blocks)["revert_reassignment"]
    assert json.loads(revert["value"])["key"] == "k-r"
    assert revert["confirm"]["confirm"]["text"] == "Revert"
    # The new owner's DM offers no undo: only the team lead may revert.
    dm = build_message(replace(n, persona=Persona.NEW_OWNER, via="slack_dm"), "k-r")
    assert "revert_reassignment" not in buttons(dm.blocks)


def test_revert_button_follows_the_typed_flag_not_the_kind() -> None:
    # An admin renamed the reassign step: the team lead can still undo it.
    renamed = note("handed_over", persona=Persona.MANAGER, via="team_channel", channel="C1", reassignment=True)
    assert "revert_reassignment" in buttons(build_message(renamed, "k-h").blocks)
    # The reassign step's kind, but nobody took the lead (it was queued): nothing to undo.
    queued = note("sla_breach_auto_reassign", persona=Persona.MANAGER, via="team_channel", channel="C1")
    assert "revert_reassignment" not in buttons(build_message(queued, "k-q").blocks)


def test_unknown_kind_gets_the_generic_header() -> None:
    msg = build_message(note("stuck_lead_2x"), "k")
    assert header(msg.blocks) == "SLA update: Priya Nair (Nimbus Labs)"
    intro = msg.blocks[1]["text"]["text"]
    assert intro == "Priya Nair is in NEW (SLA breach in 12 minutes). Owner: Ana Lima."


def test_template_override_per_kind_keeps_other_defaults() -> None:
    override = "{market}/{source}: {name} — {remaining} [{rule_id}@{version}]"
    templates = {"sla_breach_imminent.header": override}
    msg = build_message(note(), "k", templates)
    assert header(msg.blocks) == ("IN/paid_social: Priya Nair — SLA breach in 12 minutes "
                                  "[sla.imminent@3f9a1c2 (2026-Q4 policy)]")
    assert msg.blocks[1]["text"]["text"].startswith("Ana Lima, this lead has waited")
    assert "sla_breach_imminent.header" in DEFAULT_TEMPLATES  # the override did not mutate the defaults
    assert DEFAULT_TEMPLATES["sla_breach_imminent.header"].startswith(":warning:")


def test_template_problems_are_all_reported() -> None:
    problems = template_problems({
        "sla_breach.header": "{name} {nmae}",
        "sla_breach.intro": "{name.__class__}",
        "sla_breach.footer": "{name}",
        "default.intro": "{name",
    })
    assert len(problems) == 4
    assert "unknown field {nmae}" in problems[0]
    assert "unknown field {name.__class__}" in problems[1]
    assert "'sla_breach.footer'" in problems[2]
    assert "'default.intro'" in problems[3]
    assert template_problems(DEFAULT_TEMPLATES) == []


def test_values_are_escaped_in_mrkdwn_but_not_in_the_plain_header() -> None:
    msg = build_message(note(lead=lead(name="<!channel> & Sons", company="A<B>")), "k")
    assert header(msg.blocks) == ":warning: SLA breach in 12 minutes: <!channel> & Sons (A<B>)"
    assert fields(msg.blocks)["Lead"] == "&lt;!channel&gt; &amp; Sons"
    assert "<!channel>" not in msg.text and "&lt;!channel&gt;" in msg.text


def test_long_values_are_truncated_within_slack_limits() -> None:
    huge = "Ünïcødé & Co " * 400
    msg = build_message(note(lead=lead(name=huge, company=huge)), "k")
    head = header(msg.blocks)
    assert len(head) == 150 and head.endswith("…")
    for b in msg.blocks:
        if b["type"] == "section" and "text" in b:
            assert len(b["text"]["text"]) <= 3000
        for f in b.get("fields", []):
            assert len(f["text"]) <= 2000
    assert fields(msg.blocks)["Lead"].endswith("…")
    assert len(msg.blocks) <= 50 and len(msg.text) <= 4000
    assert msg.text.endswith(f"<{SF_URL}|Open in Salesforce>")  # the link survives the cut


def test_clip_never_splits_an_entity() -> None:
    assert clip("aaaaaaaa&amp;", 10) == "aaaaaaaa…"
    assert clip("short", 10) == "short"
    assert clip("abcdefghijk", 10) == "abcdefghi…"
    assert clip("aaaaaaaa& b", 10, escaped=False) == "aaaaaaaa&…"  # plain text: '&' is just a character


def test_fallback_note_comes_right_after_the_header() -> None:
    msg = build_message(note(), "k", fallback_note="For *Ana*: posted here")
    assert msg.blocks[1]["text"]["text"] == "For *Ana*: posted here"
    assert msg.text.startswith("For *Ana*: posted here\n:warning:")


def test_stuck_and_compliance_messages_say_why_in_their_own_words() -> None:
    stuck = build_message(note("stuck_lead", rule_id="stuck.manager", elapsed_business_s=3 * 4 * 3600,
                               extra={"reason": "No move out of NEW for 3x its 240-minute window."}), "k1")
    assert stuck.text.startswith(":hourglass_flowing_sand: Stuck in NEW: Priya Nair (Nimbus Labs)")
    assert "has been in NEW for *12 h* of business time. No move out of NEW for 3x" in json.dumps(stuck.blocks)
    hold = build_message(note("compliance_hold", persona=Persona.COMPLIANCE, via="channel", channel="#compliance",
                              extra={"reason": "Matched: sanctions_match, pep."}), "k2")
    assert hold.text.startswith(":no_entry: Compliance hold: Priya Nair") and "Matched: sanctions_match, pep." in \
        json.dumps(hold.blocks)


def test_owner_field_follows_the_typed_reassignment_flag_not_the_kind_in_slack_and_teams() -> None:
    extra = {"new_owner_name": "Bo Chen", "from_owner_name": "Ana Lima", "reason": "no contact in 1.5x window"}
    # An admin renamed the reassign step's kind: the message still names the new owner.
    renamed = note("handed_over", persona=Persona.MANAGER, via="team_channel", channel="C1", extra=extra,
                   reassignment=True)
    assert fields(build_message(renamed, "k-h").blocks)["Owner"] == "Bo Chen"
    assert teams_facts(renamed)["Owner"] == "Bo Chen"
    # The reassign step's kind, but nobody took the lead (queued): the owner is still who owns it.
    queued = note("sla_breach_auto_reassign", persona=Persona.MANAGER, via="team_channel", channel="C1")
    assert fields(build_message(queued, "k-q").blocks)["Owner"] == "Ana Lima"
    assert teams_facts(queued)["Owner"] == "Ana Lima" and "Reason" not in teams_facts(queued)


def teams_facts(n: Notification) -> dict[str, str]:
    """The Teams card's FactSet as {title: value}."""
    body = card(n)["body"]
    facts = next(b for b in body if b.get("type") == "FactSet")["facts"]
    return {fact["title"]: fact["value"] for fact in facts}
