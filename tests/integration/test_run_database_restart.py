"""`sidecar run` started while PostgreSQL is away (restarting) waits for it instead of exiting.

Chaos run defect: an instance restarted while PostgreSQL restarted, and ended with "database error:
... server closed the connection unexpectedly": its start-up (migrations, summary, releasing a killed
process's claims) had no retry. Here PostgreSQL sits behind a loopback forwarder that refuses
connections at first (its port bound, not listening), as a database that is down does, and then
forwards them to the test server: the same process must come up, with one warning line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import make_url

from tests.e2e.test_run_process import closed_port, sidecar, wait_for

ROOT = Path(__file__).resolve().parents[2]
URL = os.environ.get("SIDECAR_TEST_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(not URL.startswith("postgresql"), reason="needs PostgreSQL (SIDECAR_TEST_DATABASE_URL)")


class Forwarder:
    """Refuses connections until `open()`, then pipes each to `target` (host, port)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        self.port = int(self.server.getsockname()[1])

    def open(self) -> None:
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


@pytest.mark.slow
def test_run_started_while_postgresql_is_away_waits_for_it_and_comes_up(tmp_path: Path) -> None:
    real = make_url(URL)
    forwarder = Forwarder((real.host or "127.0.0.1", real.port or 5432))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")} | {
        "PYTHONPATH": str(ROOT), "SIDECAR_WEB_PORT": "0",
        "SIDECAR_DATABASE_URL": real.set(port=forwarder.port).render_as_string(hide_password=False),
        "SIDECAR_HUBSPOT_ACCESS_TOKEN": "pat-na1-11111111-2222-3333-4444-555555555555",
        "SIDECAR_HUBSPOT_API_BASE": f"http://127.0.0.1:{closed_port()}"}
    out = tmp_path / "run.log"
    with out.open("wb") as sink:
        process = subprocess.Popen(sidecar("run"), cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "database unreachable at start" in out.read_text() or process.poll() is not None,
                 "the start to meet the refused database")
        assert process.poll() is None, out.read_text()  # waiting, not ended
        forwarder.open()  # the database is back
        web_line = wait_for(lambda: next((line for line in out.read_text().splitlines() if " web http" in line),
                                         None), "the startup summary")
        http = requests.Session()
        http.trust_env = False
        assert http.get(f"{web_line.split(' web ', 1)[1].split()[0]}/healthz", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        forwarder.server.close()
    text = out.read_text()
    assert code == 0 and "Traceback" not in text and "error:" not in text, text
    assert sum("database unreachable at start: cannot reach the database (connection refused)" in line
               for line in text.splitlines()) == 1, text
