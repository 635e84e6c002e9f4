"""Queues and outcomes the dashboard and /api show, each from one small provider function.

A provider takes (session, now) and returns rows; a section whose store does not exist on this
install answers with its empty-state text instead of an error. Wiring a new table (the ops review
queue, the compliance queue, lead outcomes) is: write a provider that reads it, put it in the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class QueueItem:
    crm: str
    crm_id: str
    lead: str
    reason: str
    since: datetime


@dataclass(frozen=True)
class QueueView:
    name: str
    empty: str  # shown when there is nothing, e.g. "no review queue yet"
    items: list[QueueItem] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    crm: str
    crm_id: str
    lead: str
    outcome: str  # qualified | booked | lost ...
    at: datetime


QueueProvider = Callable[[Session, datetime], QueueView]
OutcomeProvider = Callable[[Session, datetime], list[Outcome]]


def _ops_review(_session: Session, _now: datetime) -> QueueView:
    return QueueView("ops review", "no review queue yet: leads parked for ops review will be listed here")


def _compliance(_session: Session, _now: datetime) -> QueueView:
    return QueueView("compliance", "no compliance queue yet: leads on compliance hold will be listed here, "
                                   "oldest first")


QUEUE_PROVIDERS: list[QueueProvider] = [_ops_review, _compliance]
OUTCOME_EMPTY = "no outcomes recorded yet: qualification and booking results will be listed here"


def _no_outcomes(_session: Session, _now: datetime) -> list[Outcome]:
    return []


OUTCOME_PROVIDER: OutcomeProvider = _no_outcomes


def queues(session: Session, now: datetime) -> list[QueueView]:
    return [provider(session, now) for provider in QUEUE_PROVIDERS]


def outcomes(session: Session, now: datetime) -> list[Outcome]:
    return OUTCOME_PROVIDER(session, now)
