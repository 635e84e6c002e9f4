"""403 REQUEST_LIMIT_EXCEEDED: the daily allowance ("TotalRequests") vs concurrency limits
("ConcurrentRequests", "ConcurrentPerOrgLongTxn"), each answered by the emulator's fault injection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.fields import load_field_map
from connectors.salesforce.reader import SalesforceReader
from connectors.salesforce.writer import SalesforceWriter
from sidecar.domain import Crm
from sidecar.ports import Cursor, LeadContext, TaskRequest, TransientError
from tests.conftest import ROOT
from tests.contract.harness import Clock, Serve

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
FIELDS = load_field_map(ROOT / "config" / "salesforce.fields.example.yaml")


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    emulator.add_field("Task", "CompletedDateTime", "datetime")
    emulator.add_field("Task", "ReminderDateTime", "datetime")
    emulator.add_field("Task", "IsReminderSet", "boolean")
    emulator.add_field("Task", "Sidecar_Key__c", "string", external_id=True, unique=True)
    return serve(emulator, tls.server_context)


def task_request(emu: SalesforceEmulator) -> TaskRequest:
    rep = emu.add_user("Grace", "Hopper")
    lead = emu.insert("Lead", {"LastName": "Lovelace", "Company": "Engines", "OwnerId": rep})
    context = LeadContext(Crm.SALESFORCE, lead, "Ada Lovelace", "Engines", "US-East", "web_form", "high",
                          "NEW", rep, None, f"https://acme.my.salesforce.com/lightning/r/Lead/{lead}/view")
    return TaskRequest(context, rep, "Call Ada", "First touch overdue", START + timedelta(hours=1), "high")


@pytest.mark.parametrize(("limit", "retry_after"), [
    ("TotalRequests", 3600.0), ("ConcurrentRequests", 30.0), ("ConcurrentPerOrgLongTxn", 30.0)])
def test_each_limit_takes_its_own_backoff_for_a_write(
    emu: SalesforceEmulator, client: SalesforceClient, limit: str, retry_after: float
) -> None:
    request = task_request(emu)
    emu.limit_next(1, limit)
    with pytest.raises(TransientError) as refused:
        SalesforceWriter(client, FIELDS).create_task(request, "lead1:clock1:breach:task")
    assert refused.value.retry_after == retry_after
    assert limit in str(refused.value)  # the log line names the limit Salesforce gave
    assert emu.records("Task") == []


def test_a_concurrency_refusal_does_not_slow_polling_but_the_daily_one_does(
    emu: SalesforceEmulator, client: SalesforceClient, clock: Clock
) -> None:
    reader = SalesforceReader(client, FIELDS, clock=clock)
    emu.insert("Lead", {"LastName": "Early", "Company": "Engines"})
    cursor = Cursor()
    for page in reader.read_changes(cursor):
        cursor = page.cursor
    used = client.api_usage()
    assert used is not None and used[0] < used[1] * 0.9
    emu.limit_next(1, "ConcurrentRequests")
    with pytest.raises(TransientError):
        list(reader.read_changes(cursor))
    assert client.api_usage() == used  # nothing learnt about the daily allowance
    clock.advance(seconds=30)
    before = emu.api_usage[0]
    list(reader.read_changes(cursor))
    assert emu.api_usage[0] > before and reader.quota.skipped == 0  # the next poll ran at once

    emu.limit_next(1, "TotalRequests")
    with pytest.raises(TransientError):
        list(reader.read_changes(cursor))
    after = client.api_usage()
    assert after is not None and after[0] == after[1]  # the daily allowance counts as spent
    clock.advance(seconds=30)
    before = emu.api_usage[0]
    assert list(reader.read_changes(cursor)) == []
    assert emu.api_usage[0] == before and reader.quota.skipped == 1  # polling slowed down


def test_the_emulator_refuses_an_unknown_limit_name(emu: SalesforceEmulator) -> None:
    with pytest.raises(ValueError, match="ConcurrentRequests"):
        emu.limit_next(1, "Concurrent")
