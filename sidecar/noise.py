"""Noise control for notifications (seed 001 step 3: a noisy channel becomes background noise).

Breaches and reassignments always go out at once. Warnings to one recipient are limited to
`max_per_recipient` messages per window; the ones over the limit wait until the window frees up,
and warnings due for the same recipient at the same time go out as one digest listing the leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sidecar.policy.model import NoiseControl
from sidecar.ports import Notification
from sidecar.store.models import OutboxRow


class HasRequest(Protocol):
    @property
    def request(self) -> object: ...


C = TypeVar("C", bound=HasRequest)


@dataclass
class Shaped(Generic[C]):
    sends: list[list[C]]  # each inner list is one message: a single effect or a digest
    held: list[tuple[C, datetime]]  # (claim, when it may go out)


def shape(session: Session, claims: Sequence[C], now: datetime, noise: NoiseControl) -> Shaped[C]:
    sends: list[list[C]] = []
    held: list[tuple[C, datetime]] = []
    # Digests group per recipient and route: one message goes out through one channel (a person
    # reached on Slack and in Teams gets a digest in each), while the limit counts all of them.
    groups: dict[tuple[str, str], list[C]] = {}
    for claim in claims:
        request = claim.request
        if isinstance(request, Notification) and not request.urgent and request.recipient:
            groups.setdefault((request.recipient, request.via), []).append(claim)
        else:
            sends.append([claim])
    window = timedelta(minutes=noise.window_minutes)
    for (recipient, _via), group in groups.items():
        recent = session.execute(
            select(func.count(func.distinct(OutboxRow.result)), func.min(OutboxRow.done_at))
            .where(OutboxRow.recipient == recipient, OutboxRow.action == "notify",
                   OutboxRow.status == "done", OutboxRow.done_at > now - window)).one()
        sent, oldest = int(recent[0]), recent[1]
        if sent >= noise.max_per_recipient and oldest is not None:
            held.extend((claim, oldest + window) for claim in group)
        elif noise.digest or len(group) == 1:
            sends.append(group)
        else:  # no digests: send up to the limit one by one, the rest wait for the window to free up
            room = noise.max_per_recipient - sent
            sends.extend([claim] for claim in group[:room])
            held.extend((claim, (oldest or now) + window) for claim in group[room:])
    return Shaped(sends, held)
