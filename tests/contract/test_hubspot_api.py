"""Contract tests: every request HubSpot receives went through the connector's rate gate, resends
after a dropped connection included (urllib3 must not resend behind the gate's back)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.fields import FieldMap
from connectors.hubspot.reader import HubSpotReader
from sidecar.ports import Cursor, TransientError
from tests.contract.harness import Clock

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def gated(api: HubSpotApi) -> int:
    return len(api.limiter.general._sent)  # every request counts in the general gate


@pytest.mark.parametrize("path", ["/crm/v3/owners", "/crm/v3/objects/contacts/search"])
def test_a_dropped_connection_is_resent_once_through_the_gate(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock, path: str
) -> None:
    # GET (owners) is what urllib3 would have resent by itself; POST (search) it would not.
    emulator.insert("contacts", {"email": "d@example.com"})
    emulator.add_owner("rep@example.com", "Rep", "One")
    emulator.faults.add("drop", next_n=1, path_prefix=path)
    reader = HubSpotReader(api, FieldMap(), clock=clock, with_engagements=False)
    if path.endswith("search"):
        assert len([s for page in reader.read_changes(Cursor()) for s in page.snapshots]) == 1
    else:
        assert len(reader.read_users()) == 1
    statuses = [entry["status"] for entry in emulator.log.entries]
    assert statuses.count(0) == 1  # the drop
    assert gated(api) == len(statuses)  # sent by the client == received by the emulator


def test_a_connection_dropped_twice_is_a_transient_error(emulator: HubSpotEmulator, api: HubSpotApi,
                                                         clock: Clock) -> None:
    emulator.faults.add("drop", next_n=2, path_prefix="/crm/v3/owners")
    with pytest.raises(TransientError, match="network error"):
        HubSpotReader(api, FieldMap(), clock=clock).read_users()
    assert [entry["status"] for entry in emulator.log.entries] == [0, 0]
    assert gated(api) == 2


def test_a_5xx_on_a_search_is_resent_once_so_one_bad_answer_does_not_fail_the_poll(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    emulator.insert("contacts", {"email": "e@example.com"})
    emulator.faults.add("server_error", next_n=1, path_prefix="/crm/v3/objects/contacts/search")
    reader = HubSpotReader(api, FieldMap(), clock=clock, with_engagements=False)
    assert len([s for page in reader.read_changes(Cursor()) for s in page.snapshots]) == 1
    statuses = [entry["status"] for entry in emulator.log.entries]
    assert statuses.count(502) == 1 and statuses[-1] == 200  # HubSpot answers outages with 502
    assert gated(api) == len(statuses)


def test_two_5xx_in_a_row_on_a_read_are_reported_as_transient(emulator: HubSpotEmulator, api: HubSpotApi,
                                                              clock: Clock) -> None:
    emulator.faults.add("server_error", next_n=2, path_prefix="/crm/v3/owners")
    with pytest.raises(TransientError, match="HTTP 502"):
        HubSpotReader(api, FieldMap(), clock=clock).read_users()
    assert [entry["status"] for entry in emulator.log.entries] == [502, 502]


def test_a_hubspot_that_never_answers_is_given_up_on_after_the_read_timeout(
    emulator: HubSpotEmulator, api: HubSpotApi, clock: Clock
) -> None:
    # Without a timeout the poll (and its job) would wait forever; with it the call is resent once.
    emulator.add_owner("rep@example.com", "Rep", "One")
    reader = HubSpotReader(api, FieldMap(), clock=clock)
    assert len(reader.read_users()) == 1
    calls = gated(api)  # what reading the users takes when HubSpot answers
    emulator.faults.add("timeout", next_n=1, seconds=3.0, path_prefix="/crm/v3/owners")
    api.timeout = (1.0, 0.5)
    assert len(reader.read_users()) == 1
    assert gated(api) - calls == calls + 1  # the unanswered request, then the same one again
