"""The policy as a flat list of named rules: what `policy show` prints and `policy diff` compares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.policy.enforcement import enforced
from sidecar.policy.model import (
    ChurnRule,
    ComplianceRule,
    FlagRule,
    HighValueRule,
    IntentTier,
    LadderStep,
    Policy,
    StuckStep,
    WindowRule,
)

NOT_YET = " (not enforced yet)"


@dataclass(frozen=True)
class RuleLine:
    id: str
    section: str
    purpose: str
    content: dict[str, Any]


def _names(personas: list[Any]) -> str:
    return ", ".join(p.value for p in personas) or "nobody"


def _window_purpose(rule: WindowRule) -> str:
    scope = [f"{name} {value}" for name, value in
             (("market", rule.market), ("source", rule.source), ("intent", rule.intent)) if value != "*"]
    where = f" ({', '.join(scope)})" if scope else ""
    return f"{rule.state.value} leads{where}: progress within {rule.window} of business time"


def _ladder_purpose(step: LadderStep) -> str:
    actions = [f"notify {_names(step.notify)}"] if step.notify else []
    if step.crm_note:
        actions.append("write a breach note on the CRM record")
    if step.reassign:
        actions.append("reassign to an available rep of the same team")
    return f"at {step.at:.0%} of the window: audit {step.kind}; " + "; ".join(actions)


def _tier_purpose(intent: str, tier: IntentTier) -> str:
    parts = [f"{intent} intent"]
    if tier.window:
        parts.append(f"first response within {tier.window}")
    if tier.escalation != "ladder":
        parts.append(f"no ladder: {tier.escalation.replace('_', ' ')}")
    elif tier.ladder is not None:
        parts.append(f"own ladder of {len(tier.ladder)} steps")
    if tier.first_action:
        parts.append(f"first action: {tier.first_action}")
    return "; ".join(parts)


def _stuck_purpose(step: StuckStep) -> str:
    action = f"notify {_names(step.notify)}" if step.notify else ""
    if step.queue:
        action = (action + "; " if action else "") + f"surface in the {step.queue} queue"
    return f"same state for {step.multiple:g}x its window (ON_HOLD and other pause states stop the count): " \
           f"audit {step.kind}; {action}"


def _high_value_purpose(rule: HighValueRule) -> str:
    triggers = []
    if rule.min_score is not None:
        triggers.append(f"score >= {rule.min_score:g}")
    if rule.tiers:
        triggers.append(f"tier in {', '.join(rule.tiers)}")
    if rule.min_deal_size is not None:
        triggers.append(f"deal size >= {rule.min_deal_size:g}")
    rearm = f" (again only after the score fell below {rule.min_score - rule.hysteresis:g})" \
        if rule.min_score is not None else ""
    senior = f"; a junior owner's lead goes to a senior rep (seniority >= {rule.senior_min_seniority})" \
        if rule.reassign_to_senior else ""
    return f"high value when {' or '.join(triggers) or 'never'}, once per crossing{rearm}: notify " \
           f"{_names(rule.notify)} (regional_vp for strategic tiers only){senior}; later SLA windows " \
           f"x{rule.window_factor:g}"


def _compliance_purpose(rule: ComplianceRule) -> str:
    licensed = "; ".join(f"{market}: {', '.join(codes)}" for market, codes in rule.licensed_jurisdictions.items())
    where = f" or a country outside the licensed ones ({licensed})" if licensed else ""
    return (f"hold in COMPLIANCE_HOLD on flags {', '.join(rule.flags)}{where}: queue for compliance, "
            f"notify {_names(rule.notify)}; clocks paused until cleared; re-surfaced daily after "
            f"{rule.resurface_after}")


def _flag_purpose(rule: FlagRule, what: str) -> str:
    purpose = f"{what} on flags {', '.join(rule.flags)}: notify {_names(rule.notify)}"
    if isinstance(rule, ChurnRule):  # signals also come from POST /api/signals
        purpose += (f"; tag the lead {rule.tag}, retention task due in {rule.retention_task_due}"
                    + ("; new-lead clocks of the account pause until it is done" if rule.pause_outreach else ""))
    return purpose


def _not_yet(section: str) -> str:
    return "" if enforced(section) else NOT_YET


def rule_lines(policy: Policy) -> list[RuleLine]:
    lines: list[RuleLine] = []

    def add(rule_id: str, section: str, purpose: str, model: Any) -> None:
        lines.append(RuleLine(rule_id, section, purpose, model.model_dump(mode="json")))

    for name, market in policy.markets.items():
        add(f"market.{name}", "markets", f"{market.tz}, hours {dict(market.hours)}", market)
    for rule in policy.intent.rules:
        add(rule.id, "intent", rule.purpose or f"intent {rule.intent.value} for sources "
            f"{', '.join(rule.sources) or 'any'}" + (f", score >= {rule.min_score:g}"
                                                     if rule.min_score is not None else ""), rule)
    for window in policy.windows:
        add(window.id, "windows", window.purpose or _window_purpose(window), window)
    for step in policy.ladder:
        add(step.id, "ladder", step.purpose or _ladder_purpose(step), step)
    for intent, tier in policy.intent.tiers.items():
        add(f"intent.tiers.{intent.value}", "intent", tier.purpose or _tier_purpose(intent.value, tier), tier)
        for step in tier.ladder or []:
            add(step.id, "intent", step.purpose or f"{intent.value} intent: " + _ladder_purpose(step), step)
    if policy.first_response is not None:
        fr = policy.first_response
        handed = "re-owned" if fr.on_reassign == "reown" else "closed"
        add(fr.id, "first_response", fr.purpose or (
            "every new lead gets a CRM task for its owner, due when its first window runs out, with the "
            f"tier's first action; on reassignment the open task is {handed}"
            if fr.enabled else "first-response tasks are off"), fr)
    # Sections the engine validates and versions but does not act on yet say so, so that `policy
    # show` never claims behaviour the sidecar does not have.
    # (sidecar.policy.enforcement says which).
    for stuck in policy.stuck:
        add(stuck.id, "stuck", (stuck.purpose or _stuck_purpose(stuck)) + _not_yet("stuck"), stuck)
    if policy.high_value:
        partly = "; reassignment by seniority is enforced, the rest" if not enforced("high_value") else ""
        add(policy.high_value.id, "high_value", (policy.high_value.purpose or _high_value_purpose(policy.high_value))
            + partly + _not_yet("high_value"), policy.high_value)
    if policy.compliance:
        add(policy.compliance.id, "compliance", policy.compliance.purpose or _compliance_purpose(policy.compliance),
            policy.compliance)
    for section, what in (("churn", "churn risk"),):
        flag_rule: FlagRule | None = getattr(policy, section)
        if flag_rule:
            add(flag_rule.id, section, (flag_rule.purpose or _flag_purpose(flag_rule, what)) + _not_yet(section),
                flag_rule)
    for persona, route in policy.notifications.items():
        add(f"notify.{persona.value}", "notifications",
            f"{persona.value} via {route.via}" + (f" {route.channel}" if route.channel else ""), route)
    return lines
