"""`sidecar simulate`: replay the recorded period against a candidate policy, on virtual time.

A fresh store (a temporary SQLite file) gets the directory (teams, reps, PTO, markets) and the
candidate policy, activated when the recorded sidecar went live. Then what people did in the CRM
(`simulate_timeline`) is fed in minute by minute, at the instants it was recorded, through the same
ingest path and jobs `sidecar run` uses (`sync.apply_page`, `jobs.run_cycle`), so the engine decides
exactly as it would have. Its effects go to recording ports: no CRM and no Slack is called. A
performed owner change or status write lands on the simulated CRM record and is read back at the
next minute, as a webhook would bring it.

Churn signals posted to the API and compliance decisions replay too, at their recorded instants.
Not replayed: Slack clicks ("I'm on it", snooze) and reverts; and people's actions stay as
recorded even where the candidate policy would have changed who worked the lead (the simulation
cannot know what they would have done instead).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from sidecar import jobs, sync
from sidecar.domain import Crm, LeadSnapshot
from sidecar.engine.patterns.churn import SignalIn, raise_signal
from sidecar.engine.patterns.compliance_decisions import ComplianceError, decide
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.links import RecordLinks
from sidecar.outbox import Ports
from sidecar.policy.model import Policy
from sidecar.policy.version import record_version
from sidecar.ports import (
    ChangePage,
    Cursor,
    LeadUpdate,
    NoteRequest,
    Notification,
    OwnerChange,
    TaskRequest,
    TaskUpdate,
)
from sidecar.simulate_timeline import Decision, Timeline, apply_change, read_timeline, written
from sidecar.store.db import make_engine, migrate, session_factory, transaction
from sidecar.store.models import Clock, Lead, MarketRow, OutboxRow, Rep, RepPto, Team

MINUTE = timedelta(minutes=1)
IDLE_STEP = timedelta(hours=1)  # time-based jobs (aging reviews) still run when nothing is due


class EmptyPeriod(ValueError):
    """No lead arrived, changed or was escalated in the period: nothing to simulate."""


@dataclass
class Landing:
    """The simulated CRM: records, and the sidecar's writes waiting to be read back."""

    timeline: Timeline
    now: datetime
    pending: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    performed: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # people's decisions the candidate policy had no place for

    def land(self, crm: str, crm_id: str, *, owner: str | None = None, status: str | None = None) -> None:
        record = self.timeline.records.get((crm, crm_id))
        if record is not None:
            written(record, self.now, owner=owner, status=status)
            self.pending.append((crm, crm_id, owner, status))


class RecordingWriter:
    """A CRM writer that performs nothing: every effect "succeeds", owner and status land on the record."""

    def __init__(self, crm: Crm, landing: Landing) -> None:
        self.crm, self.landing = crm, landing

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        self.landing.performed["create_task"] += 1
        return f"simulated:{idempotency_key}"[:200]

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        self.landing.performed["add_note"] += 1
        return "simulated"

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        self.landing.performed["change_owner"] += 1
        self.landing.land(change.lead.crm.value, change.lead.crm_id, owner=change.to_owner_id)

    def update_lead(self, update: LeadUpdate, idempotency_key: str) -> None:
        self.landing.performed["update_lead"] += 1
        if update.crm_status:
            self.landing.land(update.lead.crm.value, update.lead.crm_id, status=update.crm_status)

    def update_task(self, update: TaskUpdate, idempotency_key: str) -> str:
        self.landing.performed["update_task"] += 1
        return "simulated"


class RecordingNotifier:
    """A notifier that sends nothing (the messages stay in the simulated outbox, by persona)."""

    def __init__(self, landing: Landing) -> None:
        self.landing = landing

    def send(self, notification: Notification, idempotency_key: str) -> str:
        self.landing.performed["notify"] += 1
        return "simulated"

    def send_digest(self, notifications: Sequence[Notification], idempotency_key: str) -> str:
        self.landing.performed["notify"] += len(notifications)
        return "simulated"


@dataclass
class Run:
    """A finished simulation: its store (to read the decisions from) and what was replayed."""

    sessions: sessionmaker[Session]
    policy_version: str
    start: datetime
    end: datetime
    leads: int
    changes: int
    echoes: int
    performed: Counter[str]
    decisions: int  # signals and compliance decisions people made, replayed
    skipped: int  # ... of which the candidate policy had no place for


@dataclass(frozen=True)
class Recorded:
    """The recording as the simulation needs it: the active policy and when the sidecar went live."""

    version: str
    policy: Policy
    go_live: datetime


def recorded_policy(session: Session) -> Recorded:
    book = PolicyBook()
    version, policy = book.active(session)
    go_live = book.go_live(session)
    assert go_live is not None  # a version is recorded
    return Recorded(version, policy, go_live)


def recorded_span(session: Session) -> tuple[datetime, datetime] | None:
    """The whole recording: first arrival to one minute after the last thing recorded."""
    from sidecar.store.models import AuditRow, LeadEvent

    first = session.scalar(select(func.min(LeadEvent.at)).where(LeadEvent.kind == "created"))
    if first is None:
        return None
    last = max(t for t in (session.scalar(select(func.max(LeadEvent.at))),
                           session.scalar(select(func.max(AuditRow.at)))) if t is not None)
    return first, _ceil(last) + MINUTE


def _ceil(at: datetime) -> datetime:
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + MINUTE


def _copy(source: Session, target: Session, model: type[DeclarativeBase]) -> None:
    columns = [attribute.key for attribute in model.__mapper__.column_attrs]
    for row in source.scalars(select(model)):
        target.add(model(**{name: getattr(row, name) for name in columns}))
    target.flush()


def simulate(recorded: sessionmaker[Session], policy: Policy, source: str, start: datetime, end: datetime,
             workdir: Path) -> Run:
    """Replay the leads of [start, end) (`read_timeline`) under `policy` until `end`; the result's
    store holds the simulated audit and outbox. `workdir` takes the temporary store."""
    with transaction(recorded) as session:
        was = recorded_policy(session)
        timeline = read_timeline(session, was.policy, start, end)
        if not timeline.changes:
            raise EmptyPeriod(f"no lead arrived, changed or was escalated between {start:%Y-%m-%d %H:%M} "
                              f"and {end:%Y-%m-%d %H:%M} UTC")
        workdir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(f"sqlite:///{workdir / 'simulate.db'}")
        migrate(engine)
        sessions = session_factory(engine)
        with transaction(sessions) as target:
            for model in (Team, Rep, RepPto, MarketRow):
                _copy(session, target, model)
            version = record_version(target, policy, source, was.go_live).version
    landing = Landing(timeline, _ceil(timeline.changes[0].at))
    writers = {crm.value: RecordingWriter(crm, landing) for crm in Crm}
    runtime = jobs.Runtime(sessions, EngineContext(PolicyBook(), RecordLinks()), readers={},
                           ports=Ports(notifier=RecordingNotifier(landing), writers=writers))
    changes, index = timeline.changes, 0
    decisions, decided = timeline.decisions, 0
    while landing.now <= end:
        while decided < len(decisions) and decisions[decided].at <= landing.now:
            _decide(sessions, runtime.ctx, decisions[decided], landing)
            decided += 1
        snapshots: list[LeadSnapshot] = []
        for crm, crm_id, _owner, _status in landing.pending:  # read back what the sidecar wrote last minute
            snapshots.append(timeline.records[(crm, crm_id)].snapshot())
        landing.pending = []
        while index < len(changes) and changes[index].at <= landing.now:
            change = changes[index]
            snapshots.append(apply_change(timeline.records[(change.crm, change.crm_id)], change))
            index += 1
        for snapshot in snapshots:
            sync.apply_page(sessions, runtime.ctx, snapshot.crm.value, ChangePage([snapshot], Cursor()),
                            sync.PollStats(), landing.now)
        jobs.run_cycle(runtime, landing.now, poll=False)
        upcoming = [x.at for x in (changes[index] if index < len(changes) else None,
                                   decisions[decided] if decided < len(decisions) else None) if x is not None]
        landing.now = _next_instant(sessions, landing, min(upcoming, default=None))
    return Run(sessions, version, start, end, len(timeline.records), len(changes), timeline.echoes,
               landing.performed, len(decisions), landing.skipped)


def _decide(sessions: sessionmaker[Session], ctx: EngineContext, decision: Decision, landing: Landing) -> None:
    """A person's signal or compliance decision, as the API or CLI would have passed it on. One the
    candidate policy has no place for (no churn rule, the lead not on hold) is counted, not applied."""
    try:
        with transaction(sessions) as session:
            lead = session.scalars(select(Lead).where(Lead.crm == decision.crm, Lead.crm_id == decision.crm_id)).first()
            if lead is None:
                raise ValueError("the lead has not arrived in the simulation")
            args = decision.args
            if decision.kind == "signal":
                raise_signal(session, ctx, lead, SignalIn(str(args["signal_id"]), str(args["type"]), "api",
                                                          args.get("occurred_at")), landing.now)
            else:
                decide(session, ctx, decision.crm, decision.crm_id, str(args["decision"]), str(args["by"]),
                       str(args["reason"]), landing.now)
    except (ValueError, ComplianceError):
        landing.skipped += 1


def _next_instant(sessions: sessionmaker[Session], landing: Landing, next_change: datetime | None) -> datetime:
    """The next minute at which anything can happen: a change, a read-back, a due step or effect."""
    now = landing.now
    if landing.pending:
        return now + MINUTE
    with transaction(sessions) as session:
        due: list[Any] = [session.scalar(select(func.min(Clock.next_due_at)).where(Clock.status == "open")),
                          session.scalar(select(func.min(OutboxRow.next_attempt_at))
                                         .where(OutboxRow.status == "pending"))]
    candidates = [_ceil(t) for t in (*due, next_change) if t is not None]
    return max(now + MINUTE, min([*candidates, now + IDLE_STEP]))
