"""Bulk API 2.0 helpers without a server: job polling decisions and CSV -> REST-shaped rows."""

from __future__ import annotations

from typing import Any, cast

import pytest

from connectors.emulators.salesforce_bulk import csv_value
from connectors.salesforce.bulk import rest_datetime, typed_rows, wait_for_job
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.mapping import parse_time
from sidecar.ports import PermanentError, TransientError


class States:
    """Answers job status requests with the given states, in order."""

    def __init__(self, *states: str) -> None:
        self.states = list(states)
        self.paths: list[str] = []

    def rest(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.paths.append(f"{method} {path}")
        return {"id": "750x", "state": self.states.pop(0), "errorMessage": "Query timed out"}


def test_polling_waits_before_each_poll_and_backs_off_to_a_cap() -> None:
    sleeps: list[float] = []
    states = States("UploadComplete", "InProgress", "InProgress", "InProgress", "JobComplete")
    info = wait_for_job(cast(SalesforceClient, states), "750x", sleeps.append, first_wait=1, max_wait=5)
    assert info["state"] == "JobComplete"
    assert sleeps == [1, 2, 4, 5, 5] and states.paths == ["GET jobs/query/750x"] * 5


@pytest.mark.parametrize(("state", "error"), [("Failed", TransientError), ("Aborted", PermanentError)])
def test_failed_jobs_may_be_retried_aborted_ones_not(state: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="750x"):
        wait_for_job(cast(SalesforceClient, States("InProgress", state)), "750x", lambda _: None)


def test_a_job_that_never_finishes_is_reported_not_waited_on_forever() -> None:
    with pytest.raises(TransientError, match="still running after 3 polls"):
        wait_for_job(cast(SalesforceClient, States(*["InProgress"] * 3)), "750x", lambda _: None, max_polls=3)


def test_csv_rows_take_the_rest_api_types() -> None:
    [row] = typed_rows([{"IsConverted": "false", "Flag__c": "true", "Score__c": "23.0", "Empty__c": None,
                         "SystemModstamp": "2026-11-25T08:00:00.000Z", "Name": "true"}],
                       booleans=["IsConverted", "Flag__c", "Empty__c"], numbers=["Score__c"],
                       datetimes=["SystemModstamp"])
    assert row == {"IsConverted": False, "Flag__c": True, "Score__c": 23.0, "Empty__c": None,
                   "SystemModstamp": "2026-11-25T08:00:00.000+0000", "Name": "true"}


def test_bulk_datetimes_become_the_rest_rendering_of_the_same_instant() -> None:
    rest = "2026-11-25T08:00:00.123+0000"
    bulk = csv_value("datetime", rest)
    assert bulk == "2026-11-25T08:00:00.123Z"
    assert rest_datetime(bulk) == rest and parse_time(bulk) == parse_time(rest)
    assert (csv_value("boolean", True), csv_value("double", 7), csv_value("int", 7), csv_value("string", None)) == (
        "true", "7.0", "7", "")
