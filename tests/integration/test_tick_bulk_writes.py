"""The tick's bulk writer (sidecar/store/bulk.py) writes exactly what the ORM path wrote.

The same store is built twice and ticked at the same instant, once as the tick runs (new audit and
outbox rows queued and inserted per batch by Core, the batch's clocks updated in one statement)
and once with the batch writer switched off (every row through the ORM, as before). The audit,
the outbox, the clocks and the review queue must come out identical, column by column: ids,
order and content. The batch mixes step kinds (warnings, breaches with their notes and "ignored"
companions, reassignments that start a new clock, stuck levels up to the ops-review queue, whose
decision is changed after it was written), and a second case adds a clock whose policy cannot be
read, which fails alone while the rest of its batch fires.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.engine.evaluator import tick
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.policy.model import Policy
from sidecar.store import bulk
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow, ReviewItem
from tests.support import add_team, apply_policy, context, ingest, ny, policy_raw, snapshot

ARRIVALS = {"00QA": ny(24, 8), "00QB": ny(24, 8, 30), "00QC": ny(24, 8, 40), "00QD": ny(24, 8, 5)}
# Stuck levels before the reassignment (1.5 windows): a reassigned lead waits for its owner change.
STUCK = [{"id": "stuck.owner", "multiple": 1.1, "notify": ["owner"]},
         {"id": "stuck.manager", "multiple": 1.2, "notify": ["manager"]},
         {"id": "stuck.review", "multiple": 1.3, "queue": "ops_review", "notify": ["ops_review"]}]
# 09:15: A's and D's warnings, breaches and first two stuck levels. 09:35: A's and D's ops-review
# level (each the first decision of its clock: a bulk row, changed after it was written) and their
# reassignments, B's warning and breach (two decisions of one clock), C's warning.
TICKS = (ny(24, 9, 15), ny(24, 9, 35))


def store(path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    return session_factory(engine)


def build(sessions: sessionmaker[Session], ctx: EngineContext) -> None:
    apply_policy(sessions, policy_raw(stuck=STUCK), ny(1, 0))
    add_team(sessions)
    for crm_id, at in ARRIVALS.items():
        ingest(sessions, ctx, snapshot(crm_id, at=at))


def dump(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with transaction(sessions) as session:
        for model in (AuditRow, OutboxRow, Clock, ReviewItem):
            columns = [column.key for column in model.__table__.columns]  # type: ignore[attr-defined]
            rows = session.scalars(select(model).order_by(model.id))  # type: ignore[attr-defined]
            tables[model.__tablename__] = [tuple(getattr(row, c) for c in columns) for row in rows]
    return tables


def run(tmp_path: Path, name: str, ctx: EngineContext, *, batch_writer: bool,
        monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], dict[str, list[tuple[Any, ...]]]]:
    sessions = store(tmp_path / f"{name}.db")
    build(sessions, ctx)
    with monkeypatch.context() as patch:
        if not batch_writer:  # the ORM path: no batch is ever opened
            patch.setattr(bulk, "open_batch", lambda session: None)
            patch.setattr(bulk, "watch", lambda session, rows: None)
        retried: list[object] = []  # a batch that failed is decided again clock by clock, in savepoints
        begin_nested = Session.begin_nested
        patch.setattr(Session, "begin_nested", lambda self: retried.append(self) or begin_nested(self))
        fired: Counter[str] = Counter()
        for at in TICKS:
            fired.update(tick(sessions, ctx, at, batch=50))
    assert not retried, "every batch went through in one go (else the ORM path decided it)"
    return fired, dump(sessions)


def test_the_batch_writer_writes_what_the_orm_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fired, tables = run(tmp_path, "bulk", context(), batch_writer=True, monkeypatch=monkeypatch)
    orm_fired, orm_tables = run(tmp_path, "orm", context(), batch_writer=False, monkeypatch=monkeypatch)
    assert fired == orm_fired
    # the mix this test is about: all of it fired in the one batch
    assert {"sla_breach_imminent", "sla_breach", "sla_breach_auto_reassign", "stuck_lead"} <= set(fired)
    assert any("notification_ignored" in row for row in tables["audit"])  # a breach's unanswered warning
    assert tables["review_items"], "a stuck level opened an ops-review item"
    for name, rows in orm_tables.items():
        assert tables[name] == rows, name
    reviewed = [row for row in tables["audit"] if any(isinstance(v, dict) and "review_item_id" in v for v in row)]
    assert reviewed, "the stuck decision's details name its review item (changed after it was written)"


class UnreadablePolicy(PolicyBook):
    """A book that cannot read one clock's policy (as if its version's content were gone)."""

    def __init__(self, broken_clock_policy: str) -> None:
        super().__init__()
        self.broken = broken_clock_policy

    def get(self, session: Session, version: str) -> Policy:
        if version == self.broken:
            raise LookupError(f"policy version {version} is not recorded")
        return super().get(session, version)


def test_a_clock_with_a_missing_policy_fails_alone_and_the_rest_is_written_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    results = []
    for name, writer in (("bulk", True), ("orm", False)):
        ctx = context()
        sessions = store(tmp_path / f"{name}.db")
        build(sessions, ctx)
        broken = apply_policy(sessions, policy_raw(stuck=STUCK, ladder=[{"id": "other.imminent", "at": 0.8,
                                                            "kind": "sla_breach_imminent", "notify": ["owner"]}]),
                              ny(2, 0))
        with transaction(sessions) as session:  # lead D's SLA clock now names a version nobody can read
            lead_d = session.scalars(select(Lead).where(Lead.crm_id == "00QD")).one()
            clock_d = session.scalars(select(Clock).where(Clock.lead_id == lead_d.id, Clock.kind == "sla")).one()
            clock_d.policy_version = broken
            clock_id = clock_d.id
        book_ctx = EngineContext(book=UnreadablePolicy(broken), links=ctx.links)
        with monkeypatch.context() as patch:
            if not writer:
                patch.setattr(bulk, "open_batch", lambda session: None)
                patch.setattr(bulk, "watch", lambda session, rows: None)
            fired = Counter[str]()
            for at in TICKS:
                fired.update(tick(sessions, book_ctx, at, batch=50))
        results.append((fired, dump(sessions)))
        with transaction(sessions) as session:
            left = session.get(Clock, clock_id)
            assert left is not None and left.steps_fired == 0  # left for the next tick
    (fired, tables), (orm_fired, orm_tables) = results
    assert "could not be evaluated" in caplog.text
    assert fired == orm_fired and fired["sla_breach"] >= 2  # A's and B's breaches still fired
    for name, rows in orm_tables.items():
        assert tables[name] == rows, name
