"""What every model of the policy file shares: strict, frozen models and the shape of a rule id."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

RULE_ID = r"^[a-z0-9][a-z0-9_.\-]*$"


class Strict(BaseModel):
    # An unknown key is a typo the admin must hear about; a loaded policy never changes.
    model_config = ConfigDict(extra="forbid", frozen=True)
