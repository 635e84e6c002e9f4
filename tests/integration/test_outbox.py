"""The dispatcher: delivery once per key, retries on the injected clock, dead letters, conflicts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import outbox, outbox_calls
from sidecar.domain import Crm
from sidecar.engine.evaluator import tick
from sidecar.outbox import Ports, RetryPolicy, dispatch
from sidecar.ports import (
    ConflictError,
    LeadContext,
    NoteRequest,
    OwnerChange,
    PermanentError,
    TaskRequest,
    TaskUpdate,
    TransientError,
)
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead, LeadEvent, OutboxRow
from tests.support import (
    FakeNotifier,
    FakeWriter,
    add_team,
    apply_policy,
    context,
    ingest,
    ny,
    policy_raw,
    snapshot,
)


def breached_lead(sessions: sessionmaker[Session], until_hour: int = 10) -> None:
    """One lead run through the whole ladder (warning, breach, reassignment)."""
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions)
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    tick(sessions, ctx, ny(24, 9, 45).astimezone(UTC))


def statuses(sessions: sessionmaker[Session]) -> dict[str, tuple[str, str | None]]:
    with transaction(sessions) as session:
        return {r.idempotency_key.split(":", 3)[-1]: (r.status, r.last_error)
                for r in session.scalars(select(OutboxRow))}


def kinds(sessions: sessionmaker[Session]) -> list[str]:
    with transaction(sessions) as session:
        return [row.kind for row in session.scalars(select(AuditRow).order_by(AuditRow.id))]


def test_every_effect_delivered_once_and_redispatch_does_nothing(sessions: sessionmaker[Session]) -> None:
    breached_lead(sessions)
    notifier, writer = FakeNotifier(), FakeWriter()
    ports = Ports(notifier, {"salesforce": writer})
    now = ny(24, 9, 46).astimezone(UTC)
    first = dispatch(sessions, ports, now)
    again = dispatch(sessions, ports, now + timedelta(minutes=10))
    assert first["done"] == 8 and sum(again.values()) == 0
    # owner warning, manager at the breach, owner + new owner + manager on reassignment; note, owner change, task
    personas = sorted(n.persona.value for n in notifier.sent.values())
    assert personas == ["manager", "manager", "new_owner", "owner", "owner"]
    assert sorted(type(e).__name__ for e in writer.effects.values()) == [
        "NoteRequest", "OwnerChange", "TaskRequest"]
    assert len(notifier.calls) == len(set(notifier.calls)) and len(writer.calls) == len(set(writer.calls))
    task = next(e for e in writer.effects.values() if type(e).__name__ == "TaskRequest")
    assert task.owner_id == "r2" and "Emirates Group" in task.subject
    assert task.lead.record_url == "https://acme.my.salesforce.com/lightning/r/Lead/00Q1/view"


def test_retry_after_is_honoured_on_the_injected_clock(sessions: sessionmaker[Session]) -> None:
    breached_lead(sessions)
    notifier = FakeNotifier(fail_with=[TransientError("ratelimited", retry_after=30)])
    ports = Ports(notifier, {"salesforce": FakeWriter()})
    now = ny(24, 9, 46).astimezone(UTC)
    outcome = dispatch(sessions, ports, now, batch=1, max_batches=1)
    assert outcome == {"retry": 1}
    dispatch(sessions, ports, now + timedelta(seconds=29))  # everything else, not the waiting row
    with transaction(sessions) as session:
        waiting = session.scalars(select(OutboxRow).where(OutboxRow.attempts == 1,
                                                          OutboxRow.status == "pending")).one()
        assert waiting.next_attempt_at == now + timedelta(seconds=30)
        assert waiting.last_error == "ratelimited"
        key = waiting.idempotency_key
    dispatch(sessions, ports, now + timedelta(seconds=30))
    assert notifier.calls.count(key) == 2 and key in notifier.sent


def test_permanent_error_goes_dead_with_reason_and_is_audited(sessions: sessionmaker[Session]) -> None:
    breached_lead(sessions)
    fix = "invite the bot to #sales-us: /invite @sidecar"
    notifier = FakeNotifier(fail_with=[PermanentError(fix)])
    dispatch(sessions, Ports(notifier, {"salesforce": FakeWriter()}), ny(24, 9, 46).astimezone(UTC))
    dead = [(key, error) for key, (status, error) in statuses(sessions).items() if status == "dead"]
    assert len(dead) == 1 and dead[0][1] == fix
    assert kinds(sessions).count("effect_failed") == 1


def test_transient_failures_give_up_after_max_attempts(sessions: sessionmaker[Session]) -> None:
    breached_lead(sessions)
    notifier = FakeNotifier(fail_with=[TransientError("503")] * 100)
    ports = Ports(notifier, {"salesforce": FakeWriter()})
    retry = RetryPolicy(max_attempts=3)
    now = ny(24, 9, 46).astimezone(UTC)
    for hour in range(4):
        dispatch(sessions, ports, now + timedelta(hours=hour * 2), retry=retry)
    result = statuses(sessions)
    notify = {key: value for key, value in result.items() if ":notify:" in key}
    assert set(notify.values()) == {("dead", "gave up after 3 attempts: 503")}
    assert len(notify) == 5 and len(notifier.calls) == 15
    assert {status for key, (status, _e) in result.items() if key not in notify} == {"done"}
    assert kinds(sessions).count("effect_failed") == 5


def test_owner_change_conflict_skips_dependents_and_audits(sessions: sessionmaker[Session]) -> None:
    breached_lead(sessions)
    notifier, writer = FakeNotifier(), FakeWriter(conflict_owner_changes=True)
    ports = Ports(notifier, {"salesforce": writer})
    now = ny(24, 9, 46).astimezone(UTC)
    dispatch(sessions, ports, now)
    dispatch(sessions, ports, now + timedelta(minutes=1))
    result = statuses(sessions)
    skipped = sorted(key for key, (status, _e) in result.items() if status == "skipped")
    assert skipped == ["2:notify:manager", "2:notify:new_owner", "2:notify:owner", "2:owner", "2:task:r2"]
    assert "new_owner" not in {n.persona.value for n in notifier.sent.values()}
    assert kinds(sessions).count("reassignment_skipped_owner_changed") == 1


def test_a_crash_after_claiming_is_recovered_after_the_lease(sessions: sessionmaker[Session]) -> None:
    breached_lead(sessions)
    now = ny(24, 9, 46).astimezone(UTC)
    with transaction(sessions) as session:  # a dispatcher claims rows, then dies before settling
        claimed, _skipped = outbox._claim(session, now, 50, timedelta(minutes=5))
    assert len(claimed) == 4  # the rows with no prerequisite
    notifier, writer = FakeNotifier(), FakeWriter()
    ports = Ports(notifier, {"salesforce": writer})
    assert sum(dispatch(sessions, ports, now + timedelta(minutes=4)).values()) == 0  # lease still held
    dispatch(sessions, ports, now + timedelta(minutes=6))
    assert {status for status, _ in statuses(sessions).values()} == {"done"}
    assert len(notifier.sent) + len(writer.effects) == 8


class BatchWriter(FakeWriter):
    """A writer that can batch tasks; one lead's task is refused by the CRM."""

    def __init__(self, refuse: str) -> None:
        super().__init__()
        self.refuse, self.batches = refuse, []  # type: ignore[var-annotated]

    def create_tasks(self, items, unsent=()):  # type: ignore[no-untyped-def]
        self.batches.append([key for _task, key in items])
        return {key: PermanentError("INVALID_CROSS_REFERENCE_KEY: WhoId") if task.lead.crm_id == self.refuse
                else f"00T{i}" for i, (task, key) in enumerate(items)}


def test_tasks_for_one_crm_go_out_in_one_batch_and_fail_alone(sessions: sessionmaker[Session]) -> None:
    ctx = context()
    apply_policy(sessions, policy_raw(), ny(1, 0))
    add_team(sessions, reps=("r1", "r2", "r3", "r4"))
    for i in range(3):
        ingest(sessions, ctx, snapshot(f"00Q{i}", at=ny(24, 8), owner="r1"))
    tick(sessions, ctx, ny(24, 9, 30).astimezone(UTC))
    writer = BatchWriter(refuse="00Q1")
    outcome = dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), ny(24, 9, 30).astimezone(UTC))
    assert len(writer.batches) == 1 and len(writer.batches[0]) == 3  # three new owners' tasks, one call
    assert not any(":task:" in key for key in writer.calls)  # no single create_task calls
    tasks = {key: status for key, (status, _error) in statuses(sessions).items() if ":task:" in key}
    assert sorted(tasks.values()) == ["dead", "done", "done"]
    assert outcome["dead"] == 1


def test_a_dispatcher_whose_lease_was_taken_over_cannot_overwrite_the_result(
        sessions: sessionmaker[Session]) -> None:
    breached_lead(sessions)
    now = ny(24, 9, 46).astimezone(UTC)
    with transaction(sessions) as session:  # A claims, then stalls past its lease
        slow, _ = outbox._claim(session, now, 1, timedelta(minutes=5))
    notifier = FakeNotifier()
    dispatch(sessions, Ports(notifier, {"salesforce": FakeWriter()}), now + timedelta(minutes=6))  # B takes over
    with transaction(sessions) as session:  # A finally hears back with a timeout
        assert outbox_calls.settle(session, slow[0], ("retry", "timeout", None), now + timedelta(minutes=7),
                              RetryPolicy()) == "lost"
    with transaction(sessions) as session:
        row = session.get(OutboxRow, slow[0].id)
        assert (row.status, row.last_error) == ("done", None)


def test_one_bad_snapshot_is_audited_and_the_rest_of_the_page_applies(sessions: sessionmaker[Session]) -> None:
    from sidecar.ports import ChangePage, Cursor
    from sidecar.sync import PollStats, apply_page

    apply_policy(sessions, policy_raw(), ny(1, 0))
    ctx = context()
    good = snapshot("00QGOOD", at=ny(24, 8))
    bad = snapshot("00QBAD", at=ny(24, 8), created_at=datetime(2026, 11, 24, 8))  # naive: the store refuses it
    apply_page(sessions, ctx, "salesforce", ChangePage([bad, good], Cursor(ny(24, 8), ())), PollStats(), ny(24, 8))
    with transaction(sessions) as session:
        failed = session.scalars(select(AuditRow).where(AuditRow.kind == "ingest_failed")).one()
        leads = session.scalars(select(Lead.crm_id)).all()
    assert failed.details["crm_id"] == "00QBAD" and leads == ["00QGOOD"]


def test_same_timestamp_two_changes_both_recorded(sessions: sessionmaker[Session]) -> None:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    ctx = context()
    ingest(sessions, ctx, snapshot(at=ny(24, 8)))
    ingest(sessions, ctx, snapshot(at=ny(24, 8, 5), score=10.0))
    ingest(sessions, ctx, snapshot(at=ny(24, 8, 5), score=20.0))  # same CRM second, another change
    with transaction(sessions) as session:
        values = [e.new for e in session.scalars(select(LeadEvent).where(LeadEvent.kind == "field_changed")
                                                 .order_by(LeadEvent.id))]
    assert values == ["10.0", "20.0"]


class NotesAndOwnersWriter(FakeWriter):
    """A writer that batches notes and owner changes: one note is refused, one lead was reassigned
    by a person; it records each batch with the keys it was told were never sent."""

    def __init__(self, refuse: str = "", reassigned: str = "", fail_notes: int = 0) -> None:
        super().__init__()
        self.refuse, self.reassigned, self.fail_notes = refuse, reassigned, fail_notes
        self.batches: list[tuple[str, list[str], set[str]]] = []

    def add_notes(self, items, unsent=()):  # type: ignore[no-untyped-def]
        self.batches.append(("add_notes", [key for _note, key in items], set(unsent)))
        if self.fail_notes:
            self.fail_notes -= 1
            raise TransientError("HubSpot 502")
        return {key: PermanentError("refused") if note.lead.crm_id == self.refuse else f"N{i}"
                for i, (note, key) in enumerate(items)}

    def change_owners(self, items):  # type: ignore[no-untyped-def]
        self.batches.append(("change_owners", [key for _change, key in items], set()))
        return {key: ConflictError("a person reassigned it") if change.lead.crm_id == self.reassigned
                else f"owner:{change.to_owner_id}" for change, key in items}


def row_statuses(sessions: sessionmaker[Session]) -> dict[str, str]:
    with transaction(sessions) as session:
        return {r.idempotency_key: r.status for r in session.scalars(select(OutboxRow))}


def lead_context(crm_id: str) -> LeadContext:
    return LeadContext(Crm.SALESFORCE, crm_id, "Ada", "Engines", None, None, None, "NEW", "r1", None, "")


def enqueue_notes_and_owner_changes(sessions: sessionmaker[Session], now: datetime) -> None:
    """Three leads, each a note and an owner change; each new owner's task depends on its change."""
    with transaction(sessions) as session:
        for lead_id in ("00Q0", "00Q1", "00Q2"):
            lead = lead_context(lead_id)
            outbox.enqueue(session, key=f"{lead_id}:note", request=NoteRequest(lead, "breached", now), now=now)
            change = outbox.enqueue(session, key=f"{lead_id}:owner",
                                    request=OwnerChange(lead, "r1", "r2", now - timedelta(minutes=1)), now=now)
            outbox.enqueue(session, key=f"{lead_id}:task", depends_on=change, now=now,
                           request=TaskRequest(lead, "r2", "Call now", "SLA", now + timedelta(hours=1)))


def test_notes_and_owner_changes_go_out_in_batches_settle_alone_and_dependants_follow(
        sessions: sessionmaker[Session]) -> None:
    now = ny(24, 9, 30).astimezone(UTC)
    enqueue_notes_and_owner_changes(sessions, now)
    writer = NotesAndOwnersWriter(refuse="00Q1", reassigned="00Q2")
    outcome = dispatch(sessions, Ports(FakeNotifier(), {"salesforce": writer}), now)
    notes = ["00Q0:note", "00Q1:note", "00Q2:note"]
    owners = ["00Q0:owner", "00Q1:owner", "00Q2:owner"]
    assert writer.batches == [("add_notes", notes, set(notes)), ("change_owners", owners, set())]
    assert not any(key.endswith((":note", ":owner")) for key in writer.calls)  # no single calls
    with transaction(sessions) as session:
        rows = {r.idempotency_key: (r.status, r.result) for r in session.scalars(select(OutboxRow))}
    assert rows["00Q0:note"] == ("done", "N0") and rows["00Q1:note"][0] == "dead"
    assert rows["00Q0:owner"] == rows["00Q1:owner"] == ("done", "owner:r2")
    assert rows["00Q2:owner"][0] == "skipped"  # the person's change stands...
    assert rows["00Q2:task"][0] == "skipped"  # ...and the new owner's task is not created
    # The tasks waited for their owner change: claimed in a later round, after it was done.
    assert rows["00Q0:task"][0] == rows["00Q1:task"][0] == "done"
    assert writer.calls == ["00Q0:task", "00Q1:task"]
    assert outcome["dead"] == 1 and outcome["skipped"] == 2


def test_a_batch_that_fails_whole_is_retried_and_looked_up_the_second_time(
        sessions: sessionmaker[Session]) -> None:
    now = ny(24, 9, 30).astimezone(UTC)
    enqueue_notes_and_owner_changes(sessions, now)
    writer = NotesAndOwnersWriter(fail_notes=1)
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    first = dispatch(sessions, ports, now, retry=RetryPolicy(base=timedelta(seconds=30)))
    assert first["retry"] == 3 and row_statuses(sessions)["00Q0:note"] == "pending"
    dispatch(sessions, ports, now + timedelta(hours=2))
    note_batches = [batch for batch in writer.batches if batch[0] == "add_notes"]
    assert len(note_batches) == 2 and note_batches[1][2] == set()  # sent before: not "unsent" any more
    assert {row_statuses(sessions)[f"00Q{i}:note"] for i in range(3)} == {"done"}


class Slow:
    """A port (notifier or writer) whose every call takes `minutes` on the test's clock and is
    recorded as (dispatcher, key); `during[n]` runs (once) inside this dispatcher's n-th call."""

    def __init__(self, inner: object, name: str, clock: list[datetime], performed: list[tuple[str, str]],
                 minutes: float = 0, during: dict[int, Callable[[], object]] | None = None) -> None:
        self.inner, self.name, self.clock, self.performed = inner, name, clock, performed
        self.minutes, self.during = minutes, during if during is not None else {}

    def __getattr__(self, method: str) -> object:
        target = getattr(self.inner, method)  # AttributeError for what the port does not offer

        def call(*args: object) -> object:
            self.performed.append((self.name, str(args[-1])))
            self.clock[0] += timedelta(minutes=self.minutes)
            hook = self.during.pop(sum(who == self.name for who, _key in self.performed), None)
            if hook is not None:
                hook()
            return target(*args)
        return call


def test_a_slow_batch_renews_each_claim_before_its_call_so_no_other_dispatcher_repeats_it(
        sessions: sessionmaker[Session]) -> None:
    """Chaos run defect: a batch's claims all leased at the claim, its calls made one by one; calls
    that started after their lease ran out were taken over and made twice (Slack messages)."""
    breached_lead(sessions)
    start = ny(24, 9, 46).astimezone(UTC)
    clock, performed = [start], []  # type: ignore[var-annotated]
    lease = timedelta(minutes=5)

    def other_dispatcher() -> None:  # B, six minutes on: the claims A made at the start ran out
        dispatch(sessions, Ports(Slow(FakeNotifier(), "B", clock, performed),
                                 {"salesforce": Slow(FakeWriter(), "B", clock, performed)}), clock[0], lease=lease)

    during = {2: other_dispatcher}  # one dict for both of A's ports: B runs once, in A's second call
    ports = Ports(Slow(FakeNotifier(), "A", clock, performed, minutes=3, during=during),
                  {"salesforce": Slow(FakeWriter(), "A", clock, performed, minutes=3, during=during)})
    dispatch(sessions, ports, start, lease=lease, clock=lambda: clock[0])
    keys = [key for _who, key in performed]
    assert not during  # B did run
    assert len(keys) == 8 and len(set(keys)) == 8, performed  # every effect once, whoever made it
    assert {who for who, _key in performed} == {"A", "B"}  # B took over what A had not started
    assert {status for status, _ in statuses(sessions).values()} == {"done"}


class TaskFirst(FakeWriter):
    """Finds a task to update only once its create was made (the real writers search by its key)."""

    def update_task(self, update: TaskUpdate, idempotency_key: str) -> str:
        if update.task_key not in self.effects:
            self.calls.append(idempotency_key)
            raise TransientError(f"no task carries key {update.task_key} yet", retry_after=60)
        return super().update_task(update, idempotency_key)


def test_a_task_update_waits_for_its_task_while_the_create_is_unsettled(sessions: sessionmaker[Session]) -> None:
    """Chaos run defect: a killed dispatcher's claim on a task's create held for its lease, while the
    update moving that task to the lead's new owner failed to find it ten times and was dead-lettered:
    the task stayed with the old owner."""
    lead = LeadContext(Crm.SALESFORCE, "00Q1", "Ada Lovelace", "Engines", "US-East", "web_form", None, "NEW",
                       "r2", None, "https://example.test/00Q1")
    start = ny(24, 9).astimezone(UTC)
    task_key = "first-response:lead:1:task:r1"
    with transaction(sessions) as session:
        outbox.enqueue(session, key=task_key, request=TaskRequest(lead, "r1", "Call", "", start), now=start)
        outbox.enqueue(session, key="clock:1:step:2:task-update", request=TaskUpdate(lead, task_key, "r2"), now=start)
    with transaction(sessions) as session:  # a dispatcher claims the create, then is killed
        claimed, _ = outbox._claim(session, start, 1, timedelta(minutes=5))
    assert [claim.key for claim in claimed] == [task_key]
    writer = TaskFirst()
    ports, retry = Ports(FakeNotifier(), {"salesforce": writer}), RetryPolicy(max_attempts=3)
    for second in range(1, 300, 61):  # the update is tried each minute while the lease holds
        dispatch(sessions, ports, start + timedelta(seconds=second), retry=retry)
    with transaction(sessions) as session:
        update = session.scalars(select(OutboxRow).where(OutboxRow.action == "update_task")).one()
        assert (update.status, update.attempts) == ("pending", 5)  # past max_attempts, not given up
    for minute in (6, 8):  # the lease ran out: the create goes out, then the update finds its task
        dispatch(sessions, ports, start + timedelta(minutes=minute), retry=retry)
    assert {status for status, _error in statuses(sessions).values()} == {"done"}
    assert writer.effects[task_key].owner_id == "r1"
    assert writer.effects["clock:1:step:2:task-update"].new_owner_id == "r2"


def test_effects_stored_while_a_run_is_sending_wait_for_the_next_run(sessions: sessionmaker[Session]) -> None:
    """The webhook drain keeps storing first-response tasks while the dispatcher sends: those wait for
    the next run (the drain rings it), so that they share a CRM call instead of going a few at a time."""
    lead = LeadContext(Crm.SALESFORCE, "00Q1", "Ada", "Engines", None, None, None, "NEW", "r1", None, "")
    now = ny(24, 9).astimezone(UTC)

    class DrainMeanwhile(FakeWriter):
        def create_task(self, task: TaskRequest, idempotency_key: str) -> str:
            if idempotency_key == "task:1":  # as the drain would, while this call is out
                with transaction(sessions) as session:
                    outbox.enqueue(session, key="task:2", request=TaskRequest(lead, "r1", "Call", "", now), now=now)
            return super().create_task(task, idempotency_key)

    with transaction(sessions) as session:
        outbox.enqueue(session, key="task:1", request=TaskRequest(lead, "r1", "Call", "", now), now=now)
    writer = DrainMeanwhile()
    ports = Ports(FakeNotifier(), {"salesforce": writer})
    assert dispatch(sessions, ports, now) == {"done": 1}
    assert writer.calls == ["task:1"]
    with transaction(sessions) as session:
        later = session.scalars(select(OutboxRow).where(OutboxRow.idempotency_key == "task:2")).one()
        assert (later.status, later.attempts) == ("pending", 0)
    assert dispatch(sessions, ports, now) == {"done": 1}  # the next run sends it
    assert writer.calls == ["task:1", "task:2"]
