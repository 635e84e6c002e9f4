"""Which policy keys the engine validates and versions but does not act on yet.

One source of truth for `policy show` ("(not enforced yet)") and `sidecar check` (warnings). A
pattern that starts acting on a key removes it here in the same change.
"""

from __future__ import annotations

from typing import Any

from sidecar.policy.model import Policy

# Section -> keys of each of its rules that nothing reads yet. Every section is acted on today (SLA
# ladder, stuck, high value, compliance, churn), so it is empty; a new section starts here.
NOT_ENFORCED: dict[str, tuple[str, ...]] = {}


def enforced(section: str) -> bool:
    """True when the engine acts on every key of `section`."""
    return section not in NOT_ENFORCED


def ignored_policy_keys(policy: Policy) -> list[str]:
    """YAML paths the policy sets (to a non-default value) that the engine ignores, e.g.
    "churn.pause_outreach" or "stuck[0].notify", in file order."""
    found: list[str] = []
    for section, names in NOT_ENFORCED.items():
        value = getattr(policy, section)
        rules: list[tuple[str, Any]] = ([(f"{section}[{i}]", rule) for i, rule in enumerate(value)]
                                        if isinstance(value, list) else [(section, value)] if value else [])
        for path, rule in rules:
            defaults = type(rule).model_fields
            for name in names:
                if getattr(rule, name) != defaults[name].get_default(call_default_factory=True):
                    found.append(f"{path}.{name}")
    return found
