"""The emulators' shared server: secrets never reach the request log; a stalled TLS client
does not block others; faults on the next N calls."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import requests

from connectors.emulators.http import Emulator, Response
from connectors.emulators.tls import make_loopback_tls


def echo() -> Emulator:
    emulator = Emulator()
    emulator.router.add("POST", r"/echo", lambda request: Response(200, {"ok": True}))
    return emulator


def test_request_log_redacts_passwords_and_tokens(tmp_path: Path) -> None:
    with echo() as emulator:
        session = requests.Session()
        session.trust_env = False
        session.post(emulator.url + "/echo", data={"username": "a@b.c", "password": "hunter2", "x": "1"})
        session.post(emulator.url + "/echo", json={"client_secret": "s3", "nested": {"token": "t"}})
        session.post(emulator.url + "/echo", data="<env><n:password>hunter2</n:password></env>",
                     headers={"Content-Type": "text/xml"})
        emulator.log.write_jsonl(tmp_path / "log.jsonl", "echo")
    text = (tmp_path / "log.jsonl").read_text()
    assert "hunter2" not in text and "s3" not in text and '"t"' not in text
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows[0]["body"] == {"username": "a@b.c", "password": "***", "x": "1"}
    assert rows[1]["body"] == {"client_secret": "***", "nested": {"token": "***"}}


def test_a_stalled_tls_client_does_not_block_the_server(tmp_path: Path) -> None:
    tls = make_loopback_tls(tmp_path)
    emulator = echo()
    emulator.start(ssl_context=tls.server_context)
    try:
        stalled = socket.create_connection(("127.0.0.1", emulator.port))  # connects, never handshakes
        response = tls.client_session().post(emulator.url + "/echo", json={}, timeout=5)
        assert response.status_code == 200 and response.json() == {"ok": True}
        stalled.close()
    finally:
        emulator.stop()


def test_faults_on_the_next_n_calls_then_normal() -> None:
    with echo() as emulator:
        session = requests.Session()
        session.trust_env = False
        emulator.faults.add("server_error", next_n=2)
        codes = [session.post(emulator.url + "/echo", json={}).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
