"""The escalation policy: YAML -> validated models -> content-hash versions."""

from sidecar.config_yaml import Problem
from sidecar.policy.load import PolicyError, load_policy, validate_policy
from sidecar.policy.model import Policy

__all__ = ["Policy", "PolicyError", "Problem", "load_policy", "validate_policy"]
