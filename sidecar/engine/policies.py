"""Policies by version, and their market calendars, loaded once per process.

A clock keeps the version it started under, so the engine needs old versions too; versions are
immutable (content hash), which makes caching them forever safe.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.calendar import BusinessCalendar
from sidecar.policy.markets import Market
from sidecar.policy.model import Policy
from sidecar.policy.version import ACTIVE_IN_TRANSACTION, policy_of
from sidecar.store.models import PolicyVersion


class PolicyBook:
    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {}
        self._calendars: dict[tuple[str, str], BusinessCalendar] = {}
        self._go_live: datetime | None = None

    def go_live(self, session: Session) -> datetime | None:
        """When the sidecar started watching: the first policy version's activation."""
        if self._go_live is None:
            self._go_live = session.scalar(select(func.min(PolicyVersion.activated_at)))
        return self._go_live

    def get(self, session: Session, version: str) -> Policy:
        policy = self._policies.get(version)
        if policy is None:
            row = session.get(PolicyVersion, version)
            if row is None:
                raise LookupError(f"policy version {version} is not recorded; run `sidecar policy apply`")
            policy = self._policies[version] = policy_of(row)
        return policy

    def active(self, session: Session) -> tuple[str, Policy]:
        # Only the version id: the row's content (the whole policy as JSON) is decoded once per
        # version by `get`, not on every call (patterns ask for the active policy per snapshot).
        # Read once per transaction: a drain applying ten leads asked ten times (about a sixth of
        # its time). A policy activated meanwhile counts from the next transaction, as it would
        # have from the next poll or drain anyway; `record_version` forgets it (activating one).
        transaction = session.get_transaction()
        cached = session.info.get(ACTIVE_IN_TRANSACTION)
        if transaction is not None and cached is not None and cached[0] is transaction:
            return cached[1], self.get(session, cached[1])
        version = session.scalar(select(PolicyVersion.version).order_by(PolicyVersion.activated_at.desc()).limit(1))
        if version is None:
            raise LookupError("no policy recorded yet; run `sidecar init` or `sidecar policy apply`")
        if transaction is not None:
            session.info[ACTIVE_IN_TRANSACTION] = (transaction, version)
        return version, self.get(session, version)

    def market(self, policy: Policy, code: str | None) -> tuple[str, Market]:
        """The lead's market, else the policy's default market, else its first one."""
        if code is not None and code in policy.markets:
            return code, policy.markets[code]
        fallback = policy.default_market or next(iter(policy.markets))
        return fallback, policy.markets[fallback]

    def calendar(self, version: str, policy: Policy, code: str | None) -> BusinessCalendar:
        name, market = self.market(policy, code)
        key = (version, name)
        if key not in self._calendars:
            self._calendars[key] = market.calendar()
        return self._calendars[key]

    def business_day(self, policy: Policy, code: str | None) -> timedelta:
        return self.market(policy, code)[1].business_day()
