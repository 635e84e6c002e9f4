"""The parts of `sidecar simulate`: counting what a policy did from the typed audit (never from
`kind`), comparing two such accounts, and reading people's changes back from the recorded store
without the sidecar's own writes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, timedelta

from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit, outbox, sync
from sidecar.audit import Pattern, StepAction
from sidecar.domain import Crm, Persona
from sidecar.engine.policies import PolicyBook
from sidecar.ports import ChangePage, Cursor, LeadContext, LeadUpdate, Notification
from sidecar.simulate_compare import Account, LeadAccount, Step, account, changed_leads, mismatches
from sidecar.simulate_timeline import read_timeline
from sidecar.store.db import transaction
from sidecar.store.models import Lead, OutboxRow
from tests.support import add_team, apply_policy, call, context, ingest, ny, policy_raw, snapshot

T0 = ny(24, 9).astimezone(UTC)
KEY = ("salesforce", "00Q1")


def _lead(session: Session) -> Lead:
    return session.query(Lead).one()


def _step(session: Session, lead: Lead, minutes: int, fraction: float | None, action: StepAction | None,
          kind: str, clock: int = 1, pattern: Pattern = Pattern.SLA, to_owner: str | None = None,
          index: int = 0) -> None:
    details = {"clock_id": clock, **({"fraction": fraction} if fraction is not None else {})}
    audit.record(session, at=T0 + timedelta(minutes=minutes), kind=kind, lead=lead, rule_id=f"rule.{kind}",
                 step_key=f"clock:{clock}:step:{index}:{kind}", details=details, pattern=pattern, action=action,
                 to_owner=to_owner)


def _recorded(sessions: sessionmaker[Session]) -> None:
    add_team(sessions)
    apply_policy(sessions, policy_raw(), T0 - timedelta(days=1))
    ingest(sessions, context(), snapshot(at=T0))


def test_account_counts_by_typed_columns_and_each_breach_once(sessions: sessionmaker[Session]) -> None:
    _recorded(sessions)
    with transaction(sessions) as session:
        lead = _lead(session)
        _step(session, lead, 48, 0.8, StepAction.NOTIFY, "a_label_the_admin_renamed", index=0)
        _step(session, lead, 60, 1.0, StepAction.NOTIFY, "breach", index=1)
        _step(session, lead, 60, None, None, "notification_ignored", index=9)  # not a step: no action
        _step(session, lead, 90, 1.5, StepAction.REASSIGN, "reassign", to_owner="r2", index=2)  # same clock
        _step(session, lead, 95, 1.0, StepAction.NOTIFY, "stuck", clock=2, pattern=Pattern.STUCK)
        _step(session, lead, 60 * 24 * 3, 0.8, StepAction.NOTIFY, "too_late", clock=3)  # after the period
        context_ = LeadContext(crm=Crm.SALESFORCE, crm_id="00Q1", name="Aisha", company="E", market="TEST",
                               source="web_form", intent=None, state="NEW", owner_id="r1", owner_name="Rep r1",
                               record_url="https://x")
        first = session.query(audit.AuditRow).filter_by(kind="a_label_the_admin_renamed").one()
        for persona in (Persona.OWNER, Persona.MANAGER):
            outbox.enqueue(session, key=f"n:{persona.value}", now=T0, audit_id=first.id, request=Notification(
                kind="x", persona=persona, via="slack_dm", lead=context_, rule_id="r", policy_version="v", at=T0,
                due_at=T0, elapsed_business_s=0.0, window_s=3600, tz="UTC"))
    with transaction(sessions) as session:
        result = account(session, {KEY}, T0, T0 + timedelta(days=1))
    lead_account = result.leads[KEY]
    assert [(s.what, s.rule_id) for s in lead_account.steps] == [
        ("warnings", "rule.a_label_the_admin_renamed"), ("breaches", "rule.breach"), ("reassignments", "rule.reassign")]
    assert lead_account.outcome() == (1, 1, ("r2",))
    assert (lead_account.name, lead_account.team, lead_account.market) == ("Aisha Al-Mansoori", "Team us", "TEST")
    assert result.notifications == {"owner": 1, "manager": 1}
    assert result.by("team", "breaches") == {"Team us": 1}


def _account(**steps: list[Step]) -> Account:
    leads = {("salesforce", name): LeadAccount(("salesforce", name), name.title(), "TEST", "web_form", "Team us",
                                               list(s)) for name, s in steps.items()}
    return Account(leads, notifications=Counter(), rep_names={"r2": "Rep Two"})


def test_changed_leads_are_those_whose_outcome_differs_and_timing_only_is_a_mismatch() -> None:
    warn, breach = Step("warnings", T0, "w"), Step("breaches", T0 + timedelta(minutes=12), "b")
    later_warn = Step("warnings", T0 + timedelta(minutes=6), "w")
    moved = Step("reassignments", T0 + timedelta(minutes=30), "r", "r2")
    active = _account(ann=[warn], bob=[warn, breach], cy=[warn, breach, moved], dee=[])
    candidate = _account(ann=[], bob=[later_warn, breach], cy=[later_warn, breach], dee=[])
    changed = changed_leads(active, candidate)
    assert [(c.lead.name, c.before, c.after) for c in changed] == [
        ("Ann", (1, 0, ()), (0, 0, ())), ("Cy", (1, 1, ("r2",)), (1, 1, ()))]
    assert set(mismatches(active, candidate)) == {("salesforce", "ann"), ("salesforce", "bob"), ("salesforce", "cy")}
    assert mismatches(active, active) == {}


def test_the_timeline_leaves_out_the_sidecars_own_writes_and_finds_the_first_owner(
        sessions: sessionmaker[Session]) -> None:
    _recorded(sessions)
    ctx = context()
    with transaction(sessions) as session:
        lead = _lead(session)
        # The sidecar reassigned r1 -> r2 at 10:30 (its shadow row took r2 at once, no event), and
        # wrote the compliance hold status at 10:40, which came back as a state change.
        audit.record(session, at=T0 + timedelta(minutes=90), kind="anything", lead=lead, pattern=Pattern.SLA,
                     action=StepAction.REASSIGN, to_owner="r2", step_key="clock:1:step:2")
        lead.owner_id = "r2"
        held = outbox.enqueue(session, key="hold:status", now=T0 + timedelta(minutes=100), request=LeadUpdate(
            lead=LeadContext(crm=Crm.SALESFORCE, crm_id="00Q1", name="", company="", market=None, source=None,
                             intent=None, state="NEW", owner_id="r2", owner_name=None, record_url=""),
            crm_status="Compliance Hold"))
        held.status = "done"
    echo_at = T0 + timedelta(minutes=101)
    ingest(sessions, ctx, snapshot(at=echo_at, owner="r2", status="Compliance Hold", status_changed_at=echo_at))
    person_at = T0 + timedelta(minutes=130)  # then a person calls and moves it to Working
    ingest(sessions, ctx, snapshot(at=person_at, owner="r3", status="Working - Contacted",
                                   status_changed_at=person_at, owner_changed_at=person_at,
                                   activities=(call("00T1", person_at),)))
    with transaction(sessions) as session:
        policy = PolicyBook().active(session)[1]
        timeline = read_timeline(session, policy, T0, T0 + timedelta(days=1))
        assert session.query(OutboxRow).count() == 1
    assert timeline.echoes == 1
    assert timeline.records[KEY].fields["owner_id"] == "r1"  # who owned it on arrival, not the shadow's r2
    assert timeline.records[KEY].fields["crm_status"] == "Open - Not Contacted"
    assert [(c.at, c.created) for c in timeline.changes] == [(T0, True), (person_at, False)]
    person = timeline.changes[1]
    assert person.sets == {"owner_id": "r3", "crm_status": "Working - Contacted"}
    assert [a.crm_id for a in person.activities] == ["00T1"]


def test_a_change_read_late_is_fed_in_when_it_was_read_with_the_crms_times(sessions: sessionmaker[Session]) -> None:
    """The recorded engine saw a 09:30 call only at the 09:34 poll: a ladder step due in between
    fired without it, so the simulation must feed it in at 09:34 too (the call keeps its 09:30)."""
    _recorded(sessions)
    ctx = context()
    called, polled = T0 + timedelta(minutes=30), T0 + timedelta(minutes=34)
    page = ChangePage([snapshot(at=called, status="Working - Contacted", status_changed_at=called,
                                activities=(call("00T9", called),))], Cursor())
    sync.apply_page(sessions, ctx, "salesforce", page, sync.PollStats(), polled)
    with transaction(sessions) as session:
        timeline = read_timeline(session, PolicyBook().active(session)[1], T0, T0 + timedelta(days=1))
    late = timeline.changes[1]
    assert (late.at, late.status_changed_at, late.modified_at) == (polled, called, called)
    assert [(a.crm_id, a.at) for a in late.activities] == [("00T9", called)]


def test_an_older_lead_escalated_in_the_period_replays_from_its_arrival(sessions: sessionmaker[Session]) -> None:
    _recorded(sessions)  # 00Q1 arrives at T0 and is escalated two days later
    ingest(sessions, context(), snapshot("00Q2", at=T0))  # 00Q2 arrives at T0 and nothing happens after
    with transaction(sessions) as session:
        lead = session.query(Lead).filter_by(crm_id="00Q1").one()
        _step(session, lead, 60 * 48, 1.0, StepAction.NOTIFY, "breach")
    with transaction(sessions) as session:
        policy = PolicyBook().active(session)[1]
        period = read_timeline(session, policy, T0 + timedelta(days=1), T0 + timedelta(days=3))
        before = read_timeline(session, policy, T0 - timedelta(days=3), T0 - timedelta(days=1))
    assert set(period.records) == {KEY}
    assert [(c.at, c.created) for c in period.changes] == [(T0, True)]  # its clock starts where it did
    assert before.records == {} and before.changes == []
