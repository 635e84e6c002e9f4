"""Helpers for event-driven pattern tests: snapshots go through ingest *and* the pattern handlers."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy.orm import Session, sessionmaker

from sidecar.domain import LeadSnapshot
from sidecar.engine.patterns.shared import EngineContext
from sidecar.store.db import transaction
from sidecar.sync import apply_snapshots


def feed(sessions: sessionmaker[Session], ctx: EngineContext, snap: LeadSnapshot) -> None:
    """One snapshot, applied as a poll or the webhook drain applies it (ingest, then `patterns.on_applied`),
    at its CRM time."""
    with transaction(sessions) as session:
        apply_snapshots(session, ctx, [snap], snap.crm_modified_at.astimezone(UTC))
