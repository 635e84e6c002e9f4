"""Test helpers: a small policy, snapshots, a directory, and in-memory fake ports."""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy.orm import Session, sessionmaker

from sidecar.domain import Crm, LeadSnapshot, ProgressActivity, ProgressKind
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.policies import PolicyBook
from sidecar.ingest import apply_snapshot
from sidecar.links import RecordLinks
from sidecar.policy import validate_policy
from sidecar.policy.version import record_version
from sidecar.ports import ConflictError, LeadUpdate, NoteRequest, Notification, OwnerChange, TaskRequest, TaskUpdate
from sidecar.store.db import transaction
from sidecar.store.models import Rep, Team
from tests.conftest import EXAMPLE_POLICY

NY = ZoneInfo("America/New_York")


def ny(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A New York wall time in November 2026 (Tue 24th, Fri 20th, ...), as an aware datetime."""
    return datetime(2026, month, day, hour, minute, tzinfo=NY)


def policy_raw(**changes: Any) -> dict[str, Any]:
    """The example policy plus a 'TEST' market (New York, 08:00-18:00, no holidays) and a 1h window."""
    raw = yaml.safe_load(EXAMPLE_POLICY.read_text())
    raw["markets"]["TEST"] = {"tz": "America/New_York", "hours": {"mon-fri": ["08:00-18:00"]}}
    raw["windows"].append({"id": "new.test", "state": "NEW", "market": "TEST", "window": "1h"})
    for key, value in changes.items():
        raw[key] = value
    return copy.deepcopy(raw)


def apply_policy(sessions: sessionmaker[Session], raw: dict[str, Any], at: datetime) -> str:
    with transaction(sessions) as session:
        return record_version(session, validate_policy(raw), "test.yaml", at.astimezone(UTC)).version


def add_team(sessions: sessionmaker[Session], team_id: str = "us", market: str = "TEST",
             reps: tuple[str, ...] = ("r1", "r2", "r3"), capacity: int = 50) -> None:
    with transaction(sessions) as session:
        session.add(Team(id=team_id, name=f"Team {team_id}", market=market, manager_id=f"{team_id}-mgr",
                         slack_channel=f"#sales-{team_id}"))
        session.flush()  # reps reference the team
        session.add(Rep(id=f"{team_id}-mgr", crm="salesforce", name=f"Manager {team_id}",
                        email=f"mgr@{team_id}.example", team_id=team_id, role="manager"))
        for rep in reps:
            session.add(Rep(id=rep, crm="salesforce", name=f"Rep {rep}", email=f"{rep}@example.com",
                            team_id=team_id, capacity=capacity))


def snapshot(crm_id: str = "00Q1", *, at: datetime, status: str = "Open - Not Contacted",
             owner: str | None = "r1", market: str | None = "TEST", **fields: Any) -> LeadSnapshot:
    base = LeadSnapshot(crm=Crm.SALESFORCE, crm_id=crm_id, crm_status=status, crm_modified_at=at,
                        name="Aisha Al-Mansoori", company="Emirates Group", email="aisha@example.com",
                        market=market, source="web_form", owner_id=owner, created_at=at)
    return replace(base, **fields)


def call(activity_id: str, at: datetime) -> ProgressActivity:
    return ProgressActivity(crm_id=activity_id, kind=ProgressKind.CALL_LOGGED, at=at, by="r1")


def context() -> EngineContext:
    return EngineContext(book=PolicyBook(), links=RecordLinks("https://acme.my.salesforce.com", "4242"))


def ingest(sessions: sessionmaker[Session], ctx: EngineContext, snap: LeadSnapshot) -> None:
    with transaction(sessions) as session:
        apply_snapshot(session, ctx.book, snap)


@dataclass
class FakeNotifier:
    sent: dict[str, Notification] = field(default_factory=dict)
    digests: dict[str, list[Notification]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_with: list[Exception] = field(default_factory=list)

    def send(self, notification: Notification, idempotency_key: str) -> str:
        self.calls.append(idempotency_key)
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.sent.setdefault(idempotency_key, notification)
        return f"C1:{len(self.sent)}"

    def send_digest(self, notifications: Sequence[Notification], idempotency_key: str) -> str:
        self.calls.append(idempotency_key)
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.digests.setdefault(idempotency_key, list(notifications))
        return f"C1:digest{len(self.digests)}"


@dataclass
class FakeWriter:
    """Idempotent by key, like the real writers (they look the key up before creating)."""

    crm: Crm = Crm.SALESFORCE
    effects: dict[str, Any] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    conflict_owner_changes: bool = False

    def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
        self.calls.append(idempotency_key)
        self.effects.setdefault(idempotency_key, task)
        return "00T1"

    def add_note(self, note: NoteRequest, idempotency_key: str) -> str:
        self.calls.append(idempotency_key)
        self.effects.setdefault(idempotency_key, note)
        return "002N"

    def change_owner(self, change: OwnerChange, idempotency_key: str) -> None:
        self.calls.append(idempotency_key)
        if self.conflict_owner_changes:
            raise ConflictError("owner changed in Salesforce after the decision")
        self.effects.setdefault(idempotency_key, change)

    def update_lead(self, update: LeadUpdate, idempotency_key: str) -> None:
        self.calls.append(idempotency_key)
        self.effects.setdefault(idempotency_key, update)

    def update_task(self, update: TaskUpdate, idempotency_key: str) -> str:
        self.calls.append(idempotency_key)
        self.effects.setdefault(idempotency_key, update)
        return "closed" if update.close else f"owner:{update.new_owner_id}"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


class VirtualTime:
    """Seconds on a virtual clock; `sleep` advances it instead of waiting (rate-gate tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def parse_exposition(text: str) -> tuple[dict[str, str], Samples]:
    """(family -> type, sample name -> labels -> value); fails on any line the text format does not allow."""
    types: dict[str, str] = {}
    samples: Samples = defaultdict(dict)
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in types, line
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = SAMPLE.match(line)
        assert match is not None, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no # TYPE line"
        key = frozenset(LABEL.findall(labels or ""))
        assert key not in samples[name], f"duplicate sample {line!r}"
        samples[name][key] = float(value)
    return types, samples
