"""Webhook intake: ids are stored once per delivery id, then read 100 per CRM call through the same
path as polling; a duplicate delivery applies nothing twice."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.domain import Crm, LeadSnapshot
from sidecar.ports import ChangePage, Cursor, DirectoryUser
from sidecar.store.db import transaction
from sidecar.store.models import IntakeItem, Lead, LeadEvent
from sidecar.sync import drain_intake, enqueue_intake, release_orphaned_intake
from tests.support import apply_policy, context, ny, policy_raw, snapshot


class Reader:
    crm = Crm.SALESFORCE

    def __init__(self) -> None:
        self.reads: list[list[str]] = []

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        return iter(())

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        self.reads.append(list(crm_ids))
        return [snapshot(crm_id, at=ny(24, 8)) for crm_id in crm_ids]

    def read_users(self) -> list[DirectoryUser]:
        return []

    def record_url(self, crm_id: str) -> str:
        return crm_id


def test_duplicate_deliveries_are_stored_once_and_applied_once(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    deliveries = [(f"evt-{i}", f"00Q{i % 250}") for i in range(250)]
    with transaction(sessions) as session:
        assert enqueue_intake(session, "salesforce", deliveries, ny(24, 8, 1)) == 250
    with transaction(sessions) as session:  # the CRM delivers the same batch again
        assert enqueue_intake(session, "salesforce", deliveries, ny(24, 8, 2)) == 0
    reader = Reader()
    assert drain_intake(sessions, context(), reader, ny(24, 8, 3)) == 250
    assert [len(ids) for ids in reader.reads] == [100, 100, 50]
    assert drain_intake(sessions, context(), reader, ny(24, 8, 4)) == 0
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(IntakeItem)) == 250
        assert session.scalar(select(func.count()).select_from(Lead)) == 250
        created = session.scalar(select(func.count()).select_from(LeadEvent).where(LeadEvent.kind == "created"))
        assert created == 250


def test_two_events_for_one_lead_in_a_batch_read_it_once(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("e1", "00QA"), ("e2", "00QA"), ("e3", "00QB")], ny(24, 8))
    reader = Reader()
    drain_intake(sessions, context(), reader, ny(24, 8, 1))
    assert reader.reads == [["00QA", "00QB"]]


def test_a_restart_on_sqlite_gives_back_the_ids_a_killed_drain_had_claimed(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("e1", "00QA"), ("e2", "00QB")], ny(24, 8))
        for item in session.scalars(select(IntakeItem)):  # as a drain killed while reading the CRM left them
            item.claim_token, item.claimed_until = "dead" * 8, ny(24, 8, 6)
    reader = Reader()
    assert drain_intake(sessions, context(), reader, ny(24, 8, 1)) == 0  # leased: not taken before 8:06
    released = release_orphaned_intake(sessions)
    if sessions.kw["bind"].dialect.name == "sqlite":  # one instance per file: the claim is surely orphaned
        assert released == 2
        assert drain_intake(sessions, context(), reader, ny(24, 8, 1)) == 2
    else:  # on PostgreSQL the claim may be a live instance's: its lease decides
        assert released == 0
        assert drain_intake(sessions, context(), reader, ny(24, 8, 7)) == 2
    assert reader.reads == [["00QA", "00QB"]]


def test_a_burst_of_events_about_the_same_leads_costs_one_read_per_lead(sessions: sessionmaker[Session]) -> None:
    """1,000 events about 20 leads: one CRM read of the 20 ids, every event marked processed."""
    apply_policy(sessions, policy_raw(), ny(1, 0))
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [(f"burst-{i}", f"00Q{i % 20}") for i in range(1000)], ny(24, 8))
    reader = Reader()
    assert drain_intake(sessions, context(), reader, ny(24, 8, 1)) == 20
    assert [sorted(ids) for ids in reader.reads] == [sorted(f"00Q{i}" for i in range(20))]
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(IntakeItem)
                              .where(IntakeItem.processed_at.is_(None))) == 0


def test_an_event_stored_while_its_lead_is_being_read_is_read_again(sessions: sessionmaker[Session]) -> None:
    """The read may predate the change a later event announces: that event waits for its own read."""
    apply_policy(sessions, policy_raw(), ny(1, 0))
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("early", "00QA")], ny(24, 8))

    class LateEvent(Reader):
        def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
            if not self.reads:  # a webhook lands between our read and our write
                with transaction(sessions) as session:
                    enqueue_intake(session, "salesforce", [("late", "00QA")], ny(24, 8, 1))
            return super().read_leads(crm_ids)

    reader = LateEvent()
    drain_intake(sessions, context(), reader, ny(24, 8, 2))
    assert reader.reads == [["00QA"], ["00QA"]]  # read again for the late event
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(IntakeItem)
                              .where(IntakeItem.processed_at.is_(None))) == 0


def test_the_drain_lets_a_part_batch_gather_until_its_oldest_id_is_a_linger_old(
        sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(24, 7))
    received = ny(24, 8)
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("e1", "00QA"), ("e2", "00QB")], received)
    slept: list[float] = []
    reader = Reader()
    drain_intake(sessions, context(), reader, received, linger=timedelta(milliseconds=200),
                 clock=lambda: received + timedelta(milliseconds=50), sleep=slept.append)
    assert slept == [pytest.approx(0.15)]  # once, for the rest of the oldest id's linger
    assert reader.reads == [["00QA", "00QB"]]


def test_the_drain_does_not_linger_over_a_full_batch_or_an_id_older_than_the_linger(
        sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(24, 7))
    received = ny(24, 8)
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("e1", "00QA"), ("e2", "00QB"), ("e3", "00QC")], received)
    slept: list[float] = []
    reader = Reader()
    drain_intake(sessions, context(), reader, received, batch=2, linger=timedelta(milliseconds=200),
                 clock=lambda: received + timedelta(milliseconds=50), sleep=slept.append)
    assert slept == [pytest.approx(0.15)]  # the first batch was full: only the last id of three waited
    assert reader.reads == [["00QA", "00QB"], ["00QC"]]
    with transaction(sessions) as session:
        enqueue_intake(session, "salesforce", [("e4", "00QD")], received)
    drain_intake(sessions, context(), reader, received, linger=timedelta(milliseconds=200),
                 clock=lambda: received + timedelta(seconds=1), sleep=slept.append)
    assert len(slept) == 1 and reader.reads[-1] == ["00QD"]  # a second old already: read at once
