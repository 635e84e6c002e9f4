"""SIDECAR_WEB_WORKERS: several web processes for one `sidecar run` (PostgreSQL), refused with one
line on SQLite; a webhook stored by a worker rings the parent's doorbell."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import select as io_select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from sidecar import service
from sidecar.settings import Settings
from sidecar.store.db import make_engine, reading, session_factory
from sidecar.store.locks import single_instance
from sidecar.store.models import IntakeItem
from sidecar.web.workers import RestartDelays, WebWorkers, listening_socket, workers_problem

SECRET = "worker-test-secret"


def test_more_than_one_worker_is_refused_on_sqlite_with_one_line() -> None:
    line = workers_problem(2, "sqlite")
    assert line is not None and "\n" not in line
    assert "SIDECAR_WEB_WORKERS=2 needs PostgreSQL" in line and "SIDECAR_WEB_WORKERS=1" in line
    assert workers_problem(1, "sqlite") is None
    assert workers_problem(4, "postgresql") is None


def test_the_worker_count_is_checked_in_the_settings() -> None:
    with pytest.raises(ValidationError, match="SIDECAR_WEB_WORKERS must be between 1 and 64"):
        Settings(web_workers=0)
    assert Settings(web_workers=3).web_workers == 3


def test_sidecar_run_refuses_two_workers_on_sqlite_before_starting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sidecar.db'}"
    settings = Settings(database_url=url, web_workers=2, hubspot_access_token="t")
    engine = make_engine(url)
    with pytest.raises(service.CannotStart, match="needs PostgreSQL"):
        service.run(settings, session_factory(engine), lambda: datetime.now(UTC))
    with single_instance(engine):  # the one-instance lock was let go: the fixed run can start
        pass


def test_two_workers_share_the_port_and_ring_the_doorbell(database_url: str, engine: object, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("web workers run on PostgreSQL (SIDECAR_TEST_DATABASE_URL)")
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name, value in {"DATABASE_URL": database_url, "HUBSPOT_APP_SECRET": SECRET, "WEB_WORKERS": "2",
                        "LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(f"SIDECAR_{name}", value)
    workers = WebWorkers(2, "127.0.0.1", 0, timedelta(minutes=15))
    base = workers.start()
    try:
        body = json.dumps([{"eventId": 1, "subscriptionId": 7, "portalId": 1, "occurredAt": 1, "objectId": 4242,
                            "subscriptionType": "contact.creation"}]).encode()
        stamp = str(int(time.time() * 1000))
        message = b"POST" + f"{base}/webhooks/hubspot".encode() + body + stamp.encode()
        signature = base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()
        response = httpx.post(f"{base}/webhooks/hubspot", content=body, timeout=120,
                              headers={"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": stamp,
                                       "X-HubSpot-Signature-v3": signature})
        assert response.status_code == 204
        assert workers.rung.is_set()  # the parent's drain is woken
        statuses = {httpx.get(f"{base}/healthz", timeout=120).status_code for _ in range(4)}
        assert statuses == {200}
    finally:
        workers.stop()
    with reading(session_factory(make_engine(database_url))) as session:
        assert list(session.scalars(select(IntakeItem.crm_id))) == ["4242"]


def test_a_worker_that_dies_is_logged_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    from tests.integration.web_worker_targets import hold

    workers = WebWorkers(2, "127.0.0.1", 0, timedelta(minutes=15), target=hold, delays=RestartDelays(first_s=0.0))
    workers.start()
    try:
        before = workers.pids()
        assert before[0] is not None
        os.kill(before[0], signal.SIGKILL)  # the OOM killer, say
        assert workers.wait_for_restarts(1, timeout=60)
        after = workers.pids()
        assert after[0] not in (None, before[0]) and after[1] == before[1]  # only the dead one replaced
        assert all(process.is_alive() for process in workers._processes)
        assert f"(pid {before[0]}) ended with exit code -9" in caplog.text
    finally:
        workers.stop()
    assert not any(process.is_alive() for process in workers._processes)


def test_restarts_wait_longer_while_a_worker_keeps_dying_young() -> None:
    delays = RestartDelays(first_s=1, max_s=60, steady_s=60)
    assert [delays.after_death(0, lived_s=0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert delays.after_death(1, lived_s=0.5) == 1  # each worker on its own count
    assert delays.after_death(0, lived_s=61) == 1  # it had served a while: not a start that fails


@pytest.mark.parametrize("target", ["hold", "app"])
def test_workers_end_with_a_killed_parent_and_free_the_port(target: str, database_url: str, engine: object,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGKILLed `sidecar run` cannot stop its workers: each sees its parent gone and ends, so a
    restarted sidecar (systemd, docker) can listen on the port again."""
    if target == "app":
        if not database_url.startswith("postgresql"):
            pytest.skip("web workers run on PostgreSQL (SIDECAR_TEST_DATABASE_URL)")
        for name, value in {"DATABASE_URL": database_url, "HUBSPOT_APP_SECRET": SECRET, "LOG_LEVEL": "WARNING"}.items():
            monkeypatch.setenv(f"SIDECAR_{name}", value)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", str(root))
    parent = subprocess.Popen([sys.executable, "-m", "tests.integration.web_worker_targets", target], cwd=root,
                              stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        ready, _, _ = io_select.select([parent.stdout], [], [], 120)
        assert ready, "the parent did not start its workers"
        port, *rest = (int(word) for word in parent.stdout.readline().split())
        pids = rest
        if target == "app":  # served by a worker (the kernel queues the connection until one accepts it)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=120).status_code == 200
        watched = [os.pidfd_open(pid) for pid in pids]
        parent.kill()
        parent.wait(30)
        for fd in watched:
            ended, _, _ = io_select.select([fd], [], [], 60)  # readable once that process has ended
            os.close(fd)
            assert ended, "a worker outlived its killed parent"
        listening_socket("127.0.0.1", port).close()  # the port is free again
    finally:
        parent.kill()
        parent.wait(30)
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
