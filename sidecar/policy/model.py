"""The escalation policy as typed data. Field-level checks live here; cross-section checks in load.py;
markets and window durations (business time) in markets.py."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sidecar.domain import Intent, LeadState, Persona, ProgressKind
from sidecar.policy.base import RULE_ID, Strict
from sidecar.policy.markets import DURATION_PATTERN, Duration, Market, check_duration, duration_seconds


class WindowRule(Strict):
    id: Annotated[str, Field(pattern=RULE_ID)]
    state: LeadState
    market: str = "*"
    source: str = "*"
    intent: Intent | Literal["*"] = "*"
    window: Duration
    purpose: str = ""

    def specificity(self) -> int:
        return sum(value != "*" for value in (self.market, self.source, self.intent))

    def matches(
        self, market: str | None, source: str | None, state: LeadState, intent: Intent | None
    ) -> bool:
        return (
            self.state == state
            and self.market in ("*", market)
            and self.source in ("*", source)
            and self.intent in ("*", intent)
        )


class IntentRule(Strict):
    id: Annotated[str, Field(pattern=RULE_ID)]
    intent: Intent
    sources: list[str] = Field(default_factory=list)
    min_score: float | None = None
    purpose: str = ""


class IntentTier(Strict):
    """What one intent tier changes (seed 002: not every lead needs the same SLA). Applies to the
    first-response (NEW) clock of a lead of this tier; later states use the main ladder.

    `ladder` steps take `at` as a fraction of the window (0.8) or as business time from arrival
    ("10m", "1h"); times need the tier's own `window` in minutes or hours and are stored as the
    fraction of it they are. `escalation`: `ladder` (the tier's ladder, else the main one),
    `qualification_task` (the first-response task asks to qualify the lead; no ladder), or
    `review_queue` (that task, and the lead goes to its team's ops review queue; no ladder)."""

    first_action: str = ""  # the recommended first action written into the first-response task
    window: Duration | None = None  # NEW leads of this tier: replaces the matching window rule
    ladder: list[LadderStep] | None = None
    escalation: Literal["ladder", "qualification_task", "review_queue"] = "ladder"
    purpose: str = ""

    @model_validator(mode="before")
    @classmethod
    def _absolute_steps(cls, data: Any) -> Any:
        """Steps given as business time ("10m") become fractions of the tier's window."""
        if not isinstance(data, dict) or not isinstance(data.get("ladder"), list):
            return data
        steps = data["ladder"]
        timed = [step for step in steps if isinstance(step, dict) and isinstance(step.get("at"), str)]
        if not timed:
            return data
        window = data.get("window")
        match = DURATION_PATTERN.match(window) if isinstance(window, str) else None
        if match is None or match.group(2) == "bd":
            raise ValueError("ladder steps timed in minutes or hours need the tier's window in minutes or "
                             "hours (e.g. window: 15m), or give `at` as a fraction of the window")
        window_s = duration_seconds(str(window), timedelta(0))
        converted = []
        for step in steps:
            if isinstance(step, dict) and isinstance(step.get("at"), str):
                check_duration(step["at"])
                step = {**step, "at": duration_seconds(step["at"], timedelta(0)) / window_s}
            converted.append(step)
        return {**data, "ladder": converted}

    @model_validator(mode="after")
    def _ladder_in_order(self) -> IntentTier:
        problems = ladder_order_problems(self.ladder or [])
        if problems:
            raise ValueError(problems[0][1])
        return self


class IntentPolicy(Strict):
    rules: list[IntentRule] = Field(default_factory=list)
    default: Intent = Intent.UNCLEAR
    tiers: dict[Intent, IntentTier] = Field(default_factory=dict)


class LadderStep(Strict):
    id: Annotated[str, Field(pattern=RULE_ID)]
    at: Annotated[float, Field(gt=0, le=10)]
    kind: Annotated[str, Field(pattern=r"^[a-z_]+$")]
    notify: list[Persona] = Field(default_factory=list)
    crm_note: bool = False
    reassign: Literal["same_team"] | None = None
    purpose: str = ""


def ladder_order_problems(steps: list[LadderStep]) -> list[tuple[int, str]]:
    """(index, message) for each step whose fraction does not exceed the one before it."""
    return [
        (i + 1, f"ladder fractions must increase: {after.id} at {after.at:g} comes after "
                f"{before.id} at {before.at:g}")
        for i, (before, after) in enumerate(itertools.pairwise(steps))
        if after.at <= before.at
    ]


class StuckStep(Strict):
    id: Annotated[str, Field(pattern=RULE_ID)]
    multiple: Annotated[float, Field(gt=1)]
    notify: list[Persona] = Field(default_factory=list)
    queue: Literal["ops_review"] | None = None
    purpose: str = ""
    kind: Annotated[str, Field(pattern=r"^[a-z_]+$")] = "stuck_lead"  # the audit label


class HighValueRule(Strict):
    id: Annotated[str, Field(pattern=RULE_ID)] = "high_value"
    min_score: float | None = None
    tiers: list[str] = Field(default_factory=list)
    min_deal_size: float | None = None
    window_factor: Annotated[float, Field(gt=0, le=1)] = 1.0
    notify: list[Persona] = Field(default_factory=list)
    reassign_to_senior: bool = False
    purpose: str = ""
    # A flagged lead is flagged again only after its score fell below min_score - hysteresis (and no
    # other criterion holds): a score oscillating around the threshold flags once.
    hysteresis: Annotated[float, Field(ge=0)] = 10.0
    senior_min_seniority: Annotated[int, Field(ge=1)] = 2  # an owner below this is junior


class FlagRule(Strict):
    """A set of CRM flags that trigger a pattern (the base of `ChurnRule`)."""

    id: Annotated[str, Field(pattern=RULE_ID)]
    flags: list[str]
    notify: list[Persona] = Field(default_factory=list)
    pause_outreach: bool = False
    purpose: str = ""


class ComplianceRule(Strict):
    """Compliance hold (seed 000 pattern 4): any of `flags` (or a country outside the market's
    licensed jurisdictions) holds the lead until compliance clears or rejects it. The hold pauses
    the lead itself, so there is no `pause_outreach` here (that is churn's account-wide pause)."""

    id: Annotated[str, Field(pattern=RULE_ID)]
    flags: list[str]
    notify: list[Persona] = Field(default_factory=list)
    purpose: str = ""

    # Market code -> ISO country codes the company may sell to from there, e.g. {DACH: [DE, AT, CH]}.
    # A lead whose country is known and not listed for its market is "unlicensed_jurisdiction".
    licensed_jurisdictions: dict[str, list[str]] = Field(default_factory=dict)
    resurface_after: Duration = "2bd"  # items waiting longer are shown to compliance again, daily
    kind: Annotated[str, Field(pattern=r"^[a-z_]+$")] = "compliance_hold"  # the audit label of a hold


class ChurnRule(FlagRule):
    """Churn risk (seed 000 pattern 5): `flags` are the signal types, from CRM flags or POST /api/signals."""

    retention_task_due: Duration = "2bd"  # the retention touchpoint task is due this much business time later
    tag: Annotated[str, Field(min_length=1, max_length=80)] = "churn-risk-elevated"


class Route(Strict):
    # slack_dm / team_channel follow the team's chat system (directory `chat:`): a team on Teams gets
    # a Teams chat / its Teams channel. teams_chat / teams_channel pin Microsoft Teams for this persona.
    via: Literal["slack_dm", "team_channel", "channel", "teams_chat", "teams_channel"]
    channel: str | None = None
    quiet_hours: bool = False  # hold non-urgent messages outside the recipient's business hours


class NoiseControl(Strict):
    """Warnings (not breaches) to one recipient: at most `max_per_recipient` messages per window;
    the rest wait and go out together as one digest (seed 001: noisy alerts get ignored)."""

    max_per_recipient: Annotated[int, Field(ge=1)] = 4
    window_minutes: Annotated[int, Field(ge=1)] = 15
    digest: bool = True


class Reassignment(Strict):
    strategy: Literal["round_robin", "least_loaded"] = "round_robin"
    high_value_strategy: Literal["round_robin", "least_loaded", "seniority"] = "seniority"


class RuleMatch(Strict):
    """Each key given must match (a value or a list of values); an empty `when` matches every lead."""

    intent: list[Intent] | None = None
    source: list[str] | None = None
    market: list[str] | None = None

    @field_validator("intent", "source", "market", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(self, intent: str | None, source: str | None, market: str | None) -> bool:
        return all(wanted is None or value in wanted
                   for wanted, value in ((self.intent, intent), (self.source, source), (self.market, market)))


class AssignmentRule(Strict):
    id: Annotated[str, Field(pattern=RULE_ID)]
    when: RuleMatch = RuleMatch()
    team: str  # a team id of the directory
    purpose: str = ""


class AssignmentPolicy(Strict):
    """Initial assignment (seed 002): the first matching rule picks the team, round robin the rep."""

    enabled: bool = False
    rules: list[AssignmentRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> AssignmentPolicy:
        ids = [rule.id for rule in self.rules]
        duplicates = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicates:
            raise ValueError(f"assignment rule ids must be unique: {', '.join(duplicates)} repeated")
        return self


class FirstResponse(Strict):
    """Seed 002 "Timed tasks": every new lead gets a CRM task for its owner, due when its first
    SLA window runs out, saying who the lead is and what to do first (`intent.tiers.<tier>.first_action`,
    else `first_action` here). Completing it is progress when `progress.NEW` lists
    `first_response_task_completed`."""

    id: Annotated[str, Field(pattern=RULE_ID)] = "first_response"
    enabled: bool = True
    kind: Annotated[str, Field(pattern=r"^[a-z_]+$")] = "first_response_task"  # the audit label
    first_action: str = "Call the lead, or email them if no number is given."
    # The lead's one open task follows the new owner, due at the new owner's deadline, or is closed
    # (the new owner then gets a task of their own: a reassignment's follow-up, a revert's "back to you").
    on_reassign: Literal["reown", "close"] = "reown"
    purpose: str = ""


class Calibration(Strict):
    """Thresholds of `sidecar calibrate` (seed 001 step 7). They change what the quarterly review
    flags, not what the engine does, so they are not part of the policy version."""

    max_breach_rate: Annotated[float, Field(gt=0, le=1)] = 0.2  # per (market, source): widen or staff up
    max_reassign_rate: Annotated[float, Field(gt=0, le=1)] = 0.1  # per team: the routing rule is wrong
    max_ignored_rate: Annotated[float, Field(gt=0, le=1)] = 0.5  # per warning rule: it is noise
    min_count: Annotated[int, Field(ge=1)] = 5  # fewer leads or warnings than this are not judged


class StateMap(Strict):
    field: str
    map: dict[str, LeadState]


class Policy(Strict):
    label: str = ""
    markets: dict[str, Market]
    default_market: str | None = None  # for leads whose market is unknown; else the first market
    states: dict[Literal["salesforce", "hubspot"], StateMap]
    intent: IntentPolicy = IntentPolicy()
    windows: list[WindowRule]
    ladder: list[LadderStep]
    stuck: list[StuckStep] = Field(default_factory=list)
    pause_states: list[LeadState] = Field(default_factory=lambda: [LeadState.ON_HOLD])
    progress: dict[LeadState, list[str]] = Field(default_factory=dict)
    high_value: HighValueRule | None = None
    compliance: ComplianceRule | None = None
    churn: ChurnRule | None = None
    notifications: dict[Persona, Route]
    reassignment: Reassignment = Reassignment()
    noise: NoiseControl = NoiseControl()
    assignment: AssignmentPolicy = AssignmentPolicy()
    first_response: FirstResponse | None = None
    calibration: Calibration = Calibration()

    @model_validator(mode="after")
    def _ladder_in_order(self) -> Policy:
        problems = ladder_order_problems(self.ladder)
        if problems:
            raise ValueError(problems[0][1])
        return self

    def window_for(
        self, market: str | None, source: str | None, state: LeadState, intent: Intent | None
    ) -> WindowRule | None:
        """Most specific matching rule; among equals, the first in the file."""
        best: WindowRule | None = None
        for rule in self.windows:
            if rule.matches(market, source, state, intent) and (
                best is None or rule.specificity() > best.specificity()
            ):
                best = rule
        return best

    def progress_kinds(self, state: LeadState) -> set[str]:
        return set(self.progress.get(state, []))

    def tier(self, intent: str | None) -> IntentTier | None:
        """The policy's settings for an intent tier, if it has any."""
        if intent is None or intent not in {tier.value for tier in Intent}:
            return None
        return self.intent.tiers.get(Intent(intent))

    def tier_ladder(self, intent: str | None, state: str) -> str | None:
        """The tier whose window and ladder a new clock in `state` uses (stored on the clock), or None
        for the window rules and the main ladder: only NEW clocks, only tiers that change either."""
        tier = self.tier(intent)
        if state != LeadState.NEW or tier is None or (
                tier.ladder is None and tier.window is None and tier.escalation == "ladder"):
            return None
        return str(intent)

    def ladder_of(self, tier_name: str | None) -> list[LadderStep]:
        """The ladder a clock follows: its tier's (empty when the tier qualifies or queues instead
        of escalating), else the main one."""
        tier = self.tier(tier_name) if tier_name else None
        if tier is None:
            return self.ladder
        if tier.escalation != "ladder":
            return []
        return tier.ladder if tier.ladder is not None else self.ladder


PROGRESS_TOKENS = {kind.value for kind in ProgressKind} | {f"state:{s.value}" for s in LeadState}

