"""A bad id in the webhook intake is dead-lettered on its own and never blocks the ids behind it.

The reader here behaves as HubSpot's batch read does: one malformed id makes the whole call fail
with a 400 (the connector raises PermanentError); an outage is a TransientError. Before the fix the
drain read the oldest 100 ids in one call, so one 10,000-digit id failed that call every 5 s and
nothing behind it was ever applied."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sidecar.domain import Crm, LeadSnapshot
from sidecar.ports import ChangePage, Cursor, DirectoryUser, PermanentError, TransientError
from sidecar.status import gather
from sidecar.store.db import transaction
from sidecar.store.models import IntakeItem, Lead
from sidecar.sync import drain_intake, enqueue_intake
from tests.support import apply_policy, context, ny, policy_raw, snapshot

POISON = "9" * 60  # no HubSpot id (those are below 2**63) yet it fits the intake's column


class CrmLikeReader:
    crm = Crm.HUBSPOT

    def __init__(self, down: bool = False, logged_out: bool = False) -> None:
        self.calls: list[int] = []
        self.down, self.logged_out = down, logged_out

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        self.calls.append(len(crm_ids))
        if self.down:
            raise TransientError("HubSpot unreachable: ConnectionError")
        if self.logged_out:
            raise PermanentError("HubSpot refused the token (401): create a new private-app token")
        bad = [i for i in crm_ids if not (i.isascii() and i.isdigit() and len(i) <= 19)]
        if bad:
            raise PermanentError(f"HubSpot refused the request (400 VALIDATION_ERROR): invalid id {bad[0][:20]}...")
        return [snapshot(i, at=ny(24, 8), crm=Crm.HUBSPOT) for i in crm_ids]

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        return iter(())

    def read_users(self) -> list[DirectoryUser]:
        return []

    def record_url(self, crm_id: str) -> str:
        return crm_id


def enqueue(sessions: sessionmaker[Session], ids: list[str]) -> None:
    with transaction(sessions) as session:
        enqueue_intake(session, "hubspot", [(f"d-{n}", i) for n, i in enumerate(ids)], ny(24, 8))


def pending(sessions: sessionmaker[Session]) -> int:
    with transaction(sessions) as session:
        return int(session.scalar(select(func.count()).select_from(IntakeItem)
                                  .where(IntakeItem.processed_at.is_(None))) or 0)


@pytest.fixture
def policy(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))


@pytest.mark.usefixtures("policy")
def test_a_poisoned_id_is_set_aside_alone_and_the_ids_behind_it_are_applied(sessions: sessionmaker[Session]) -> None:
    ids = [POISON, *(str(1000 + n) for n in range(150)), "{'id': 1}"]
    enqueue(sessions, ids)
    reader = CrmLikeReader()
    assert drain_intake(sessions, context(), reader, ny(24, 8, 5)) == 150
    assert pending(sessions) == 0
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 150
        refused = {row.crm_id: row.error for row in session.scalars(
            select(IntakeItem).where(IntakeItem.error.is_not(None)))}
        status = gather(session, ny(24, 8, 5))
    assert set(refused) == {POISON, "{'id': 1}"}
    assert all("VALIDATION_ERROR" in why for why in refused.values())
    assert {(crm, crm_id) for crm, crm_id, _ in status.dead_intake} == {("hubspot", POISON), ("hubspot", "{'id': 1}")}
    # Halving isolates a bad id in about 2*log2(100) extra calls, not one call per id.
    assert len(reader.calls) <= 2 + 2 * 2 * 7
    assert drain_intake(sessions, context(), reader, ny(24, 8, 10)) == 0  # never read again


def test_an_id_longer_than_any_crm_id_is_never_stored(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:  # a 10,000-digit string no longer fails the whole insert
        assert enqueue_intake(session, "hubspot", [("d-1", "9" * 10_000), ("d-2", "1001")], ny(24, 8)) == 1
    assert pending(sessions) == 1


@pytest.mark.usefixtures("policy")
def test_an_outage_dead_letters_nothing_the_ids_wait(sessions: sessionmaker[Session]) -> None:
    enqueue(sessions, [str(1000 + n) for n in range(30)])
    reader = CrmLikeReader(down=True)
    with pytest.raises(TransientError):
        drain_intake(sessions, context(), reader, ny(24, 8, 5))
    assert reader.calls == [30] and pending(sessions) == 30  # no halving for an outage
    reader.down = False
    assert drain_intake(sessions, context(), reader, ny(24, 8, 10)) == 30


@pytest.mark.usefixtures("policy")
def test_a_refusal_of_every_part_is_not_about_the_ids_and_dead_letters_nothing(
        sessions: sessionmaker[Session]) -> None:
    enqueue(sessions, [str(1000 + n) for n in range(8)])
    reader = CrmLikeReader(logged_out=True)
    with pytest.raises(PermanentError, match="no part of a batch of 8 ids"):
        drain_intake(sessions, context(), reader, ny(24, 8, 5))
    assert pending(sessions) == 8
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(IntakeItem).where(IntakeItem.error.is_not(None))) == 0
