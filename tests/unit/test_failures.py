"""A failing CRM is reported once, in plain words, retried with a doubling backoff, and its recovery once."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from sidecar.failures import FailureTracker, describe
from sidecar.ports import TransientError

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def refused() -> requests.ConnectionError:
    """A real connection-refused error from requests, against a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = requests.Session()
    http.trust_env = False
    try:
        http.get(f"http://127.0.0.1:{port}/crm/v3/objects/contacts", timeout=5)
    except requests.ConnectionError as exc:
        return exc
    raise AssertionError("something listens on the closed port")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_refused_connection_is_described_in_plain_words_with_the_host() -> None:
    assert describe(refused()) == "cannot reach 127.0.0.1 (connection refused)"
    wrapped = TransientError("HubSpot do_search: network error: MaxRetryError")
    wrapped.__cause__ = refused()
    assert describe(wrapped) == "cannot reach 127.0.0.1 (connection refused)"


def test_a_refused_database_connection_is_named_as_the_database_not_an_api() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/sidecar")
    with pytest.raises(OperationalError) as caught:
        engine.connect()
    assert describe(caught.value) == "cannot reach the database (connection refused)"


def test_other_errors_keep_their_first_line_and_lose_tokens() -> None:
    error = RuntimeError("SIDECAR_HUBSPOT_ACCESS_TOKEN refused (pat-na1-aaaa-bbbb)\nmore detail")
    assert describe(error) == "SIDECAR_HUBSPOT_ACCESS_TOKEN refused (***)"


def test_backoff_doubles_up_to_the_cap_and_identical_failures_are_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tracker = FailureTracker({"poll": MIN}, cap=timedelta(minutes=8))
    now, waits = T0, []
    for _ in range(6):
        assert tracker.due("poll", "hubspot", now)
        failure = tracker.failed("poll", "hubspot", now, refused())
        waits.append(failure.next_try - now)
        assert not tracker.due("poll", "hubspot", now + (failure.next_try - now) / 3)
        now = failure.next_try
    assert waits == [MIN, 2 * MIN, 4 * MIN, 8 * MIN, 8 * MIN, 8 * MIN]
    assert warnings_of(caplog) == [
        "hubspot poll failed: cannot reach 127.0.0.1 (connection refused); next try in 1 min"]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 6 and all(r.levelno == logging.DEBUG for r in tracebacks)
    assert tracker.failing()[0].since == T0 and tracker.failing()[0].tries == 6


def test_a_run_slightly_early_for_its_planned_retry_still_counts() -> None:
    tracker = FailureTracker({"poll": MIN})
    failure = tracker.failed("poll", "hubspot", T0, refused())
    assert tracker.due("poll", "hubspot", failure.next_try - timedelta(seconds=1))


def test_a_new_cause_is_logged_at_once_and_a_long_outage_is_recalled_hourly(
        caplog: pytest.LogCaptureFixture) -> None:
    tracker = FailureTracker({"poll": MIN}, cap=timedelta(minutes=10))
    tracker.failed("poll", "salesforce", T0, refused())
    tracker.failed("poll", "salesforce", T0 + MIN, RuntimeError("INVALID_SESSION_ID: log in again"))
    tracker.failed("poll", "salesforce", T0 + 30 * MIN, RuntimeError("INVALID_SESSION_ID: log in again"))
    tracker.failed("poll", "salesforce", T0 + 62 * MIN, RuntimeError("INVALID_SESSION_ID: log in again"))
    assert warnings_of(caplog) == [
        "salesforce poll failed: cannot reach 127.0.0.1 (connection refused); next try in 1 min",
        "salesforce poll still failing since 2026-12-02 14:00Z (2 tries): INVALID_SESSION_ID: log in again; "
        "next try in 2 min",
        "salesforce poll still failing since 2026-12-02 14:00Z (4 tries): INVALID_SESSION_ID: log in again; "
        "next try in 8 min",
    ]


def test_recovery_is_logged_once_and_clears_readiness(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    tracker = FailureTracker({"poll": MIN})
    tracker.failed("poll", "hubspot", T0, refused())
    tracker.failed("poll", "hubspot", T0 + MIN, refused())
    tracker.succeeded("poll", "hubspot", T0 + 3 * MIN)
    tracker.succeeded("poll", "hubspot", T0 + 4 * MIN)
    recovered = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    assert recovered == ["hubspot poll recovered after 2 failed tries (failing since 2026-12-02 14:00:00Z)"]
    assert tracker.failing() == [] and tracker.due("poll", "hubspot", T0 + 4 * MIN)


def test_one_crm_failing_does_not_hold_back_another() -> None:
    tracker = FailureTracker({"poll": MIN})
    tracker.failed("poll", "hubspot", T0, refused())
    assert tracker.due("poll", "salesforce", T0) and not tracker.due("poll", "hubspot", T0)


def test_timeouts_and_unknown_hosts_are_named_too() -> None:
    import urllib3

    pool = urllib3.HTTPSConnectionPool("api.hubapi.com", 443)
    timeout = urllib3.exceptions.MaxRetryError(pool, "/crm/v3/objects/contacts/search",
                                               urllib3.exceptions.ConnectTimeoutError("connect timed out"))
    assert describe(timeout) == "cannot reach api.hubapi.com (timed out)"
    unknown = urllib3.exceptions.MaxRetryError(pool, "/", urllib3.exceptions.NameResolutionError(
        "api.hubapi.com", None, socket.gaierror(-2, "Name or service not known")))  # type: ignore[arg-type]
    assert describe(unknown) == "cannot reach api.hubapi.com (host name not found)"
