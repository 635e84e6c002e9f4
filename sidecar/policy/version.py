"""Policy versions: a short hash of the canonical content. Same content, same version."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.policy.model import Policy
from sidecar.store.models import Clock, PolicyVersion


def canonical_content(policy: Policy) -> dict[str, Any]:
    """Everything that changes behaviour; the label is a name, and calibration thresholds only
    change what the quarterly review flags, so neither is content."""
    content: dict[str, Any] = policy.model_dump(mode="json", exclude={"label", "calibration"})
    return content


def version_of(policy: Policy) -> str:
    blob = json.dumps(canonical_content(policy), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# session.info key: (transaction, active version id) as PolicyBook.active read it in that transaction
ACTIVE_IN_TRANSACTION = "sidecar_active_policy"


def record_version(session: Session, policy: Policy, source_file: str, now: datetime) -> PolicyVersion:
    """Make this policy the active one. A known version is re-activated, never duplicated."""
    version = version_of(policy)
    row = session.get(PolicyVersion, version)
    current = active_version(session)
    if current is not None and current.version != version and now <= current.activated_at:
        # Activation order decides which version is active: never tie with, or fall behind, the
        # current one (a CLI host whose clock runs late, or two applies in one virtual instant).
        now = current.activated_at + timedelta(microseconds=1)
    if row is None:
        row = PolicyVersion(version=version, label=policy.label, content=canonical_content(policy),
                            source_file=source_file, activated_at=now)
        session.add(row)
    elif row != current:
        row.activated_at = now
    session.flush()
    session.info.pop(ACTIVE_IN_TRANSACTION, None)  # the active version may have changed
    return row


def active_version(session: Session) -> PolicyVersion | None:
    return session.scalars(
        select(PolicyVersion).order_by(PolicyVersion.activated_at.desc()).limit(1)
    ).first()


def policy_of(row: PolicyVersion) -> Policy:
    """The exact policy a version was recorded with (clocks keep the version they started under)."""
    return Policy.model_validate({**row.content, "label": row.label})


class UnknownVersion(LookupError):
    """No recorded version starts with the text given, or more than one does."""


def find_version(session: Session, ref: str) -> PolicyVersion:
    """A recorded version by its hash or any unambiguous start of it (at least 4 characters)."""
    text = ref.strip().lower()
    if len(text) < 4 or not all(c in "0123456789abcdef" for c in text):
        raise UnknownVersion(f"{ref!r} is not a policy version: give at least 4 hex characters of one "
                             "(see `sidecar policy history`)")
    rows = list(session.scalars(select(PolicyVersion).where(PolicyVersion.version.startswith(text))))
    if not rows:
        raise UnknownVersion(f"no recorded policy version starts with {text!r} (see `sidecar policy history`)")
    if len(rows) > 1:
        raise UnknownVersion(f"{text!r} matches {len(rows)} versions ({', '.join(r.version for r in rows)}); "
                             "give more characters")
    return rows[0]


def running_clocks(session: Session) -> dict[str, int]:
    """Open and paused clocks per policy version: the ones that keep their version on an apply."""
    rows = session.execute(select(Clock.policy_version, func.count()).where(Clock.status.in_(("open", "paused")))
                           .group_by(Clock.policy_version)).all()
    return {str(version): int(n) for version, n in rows}
