"""Oversized bodies: 413 from the declared length or while streaming, before the body is read
whole and before any parsing or auth, on every route; memory stays flat under 8 concurrent
100 MB posts to a real uvicorn server in a process of its own (its RSS read from /proc)."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy.orm import Session, sessionmaker

from sidecar.settings import Settings
from tests.security.support import ADMIN_TOKEN, NOW, App

MB = 1024 * 1024
LIMIT = 64 * 1024  # small limits keep the in-process tests fast; the server test uses the default


@pytest.fixture
def small(sessions: sessionmaker[Session]) -> App:
    return App(sessions, max_body_bytes=LIMIT)


ROUTES = ["/webhooks/hubspot", "/webhooks/salesforce", "/slack/actions", "/admin/leads/hubspot/1/revert",
          "/healthz", "/no/such/route"]


@pytest.mark.parametrize("path", ROUTES)
def test_a_declared_length_over_the_limit_is_413_on_every_route(small: App, path: str) -> None:
    response = small.client.post(path, content=b"x" * (LIMIT + 1), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "SIDECAR_MAX_BODY_BYTES" in response.json()["detail"]
    assert small.intake() == []


def chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"[" * min(size, total - sent)
        sent += size


# Headers that get each route as far as reading its body (a valid timestamp, the right type, the token).
READING = {
    "/webhooks/hubspot": {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": str(int(NOW * 1000))},
    "/webhooks/salesforce": {"Content-Type": "text/xml"},
    "/slack/actions": {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Slack-Request-Timestamp": str(int(NOW))},
    "/admin/leads/hubspot/1/revert": {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
}


@pytest.mark.parametrize("path", list(READING))
def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(small: App, path: str) -> None:
    # A generator makes httpx send Transfer-Encoding: chunked, with no Content-Length to trust.
    response = small.client.post(path, content=chunks(LIMIT * 4), headers=READING[path])
    assert response.status_code == 413
    assert small.intake() == []


@pytest.mark.parametrize(("path", "status"), [("/webhooks/hubspot", 401), ("/admin/leads/hubspot/1/revert", 401),
                                              ("/webhooks/salesforce", 415), ("/healthz", 405),
                                              ("/no/such/route", 404)])
def test_a_route_that_refuses_on_headers_alone_never_reads_the_body(small: App, path: str, status: int) -> None:
    read = 0

    def counted() -> Iterator[bytes]:
        nonlocal read
        for chunk in chunks(LIMIT * 4):
            read += len(chunk)
            yield chunk

    response = small.client.post(path, content=counted(), headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert read < LIMIT * 4  # the client was not even asked for the whole body


def test_the_admin_api_answers_the_limit_before_the_token(small: App) -> None:
    response = small.client.post("/admin/leads/hubspot/1/revert", content=b"{" * (LIMIT + 1),
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_body_at_the_limit_goes_through(small: App) -> None:
    body = b"[" + b" " * (LIMIT - 2) + b"]"
    response = small.client.post("/webhooks/hubspot", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401  # read and checked: unsigned


def test_a_malformed_content_length_is_400(small: App) -> None:
    # h11 (the test client's and uvicorn's parser) refuses these itself; the middleware does too,
    # for servers that pass them on.
    from sidecar.web.limits import declared_length

    assert declared_length({"headers": [(b"content-length", "１０".encode())]}) == -1
    assert declared_length({"headers": [(b"content-length", b"-1")]}) == -1
    assert declared_length({"headers": [(b"content-length", b"10")]}) == 10
    assert declared_length({"headers": []}) is None


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_MAX_BODY_BYTES", "1048576")
    assert Settings(_env_file=None).max_body_bytes == MB  # type: ignore[call-arg]
    assert Settings.model_fields["max_body_bytes"].default == 5 * MB
    monkeypatch.setenv("SIDECAR_MAX_BODY_BYTES", "10")
    with pytest.raises(ValueError, match="SIDECAR_MAX_BODY_BYTES must be at least 1024"):
        Settings(_env_file=None)  # type: ignore[call-arg]


# -- a real server in its own process -------------------------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


@dataclass
class Server:
    process: subprocess.Popen[str]
    host: str
    port: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "tests.security.serve_app", str(tmp_path_factory.mktemp("srv"))],
                               cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    url = urlsplit(process.stdout.readline().strip())
    assert url.hostname and url.port, "the server did not print its URL"
    yield Server(process, url.hostname, url.port)
    process.stdin.close()
    process.wait(timeout=30)
    process.stdout.close()


def post_100_mb(server: Server, path: str, chunked: bool, headers: dict[str, str]) -> tuple[int | None, int]:
    """POST 100 MB, 64 KB at a time, stopping as soon as the server answers or hangs up.
    Returns (status or None when the server reset before we could read one, bytes sent)."""
    total, piece = 100 * MB, b"[" * (64 * 1024)
    head = (f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n") + "\r\n")
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    sent = 0
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head.encode())
        if not chunked:  # a declared length is answered from the headers alone: wait for that answer
            select.select([sock], [], [], 10)
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(frame)
                sent += len(piece)
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
        except (BrokenPipeError, ConnectionResetError):
            return None, sent
    return (int(status_line.split()[1]) if status_line.startswith(b"HTTP/1.1 ") else None), sent


@pytest.mark.parametrize(("path", "chunked", "headers", "statuses"), [
    ("/webhooks/hubspot", False, {"Content-Type": "application/json"}, {413}),  # unauthenticated, as reported
    ("/webhooks/hubspot", True, READING["/webhooks/hubspot"], {413}),  # read until the limit, then cut off
    ("/webhooks/hubspot", True, {"Content-Type": "application/json"}, {401}),  # refused on its headers
    ("/webhooks/salesforce", True, READING["/webhooks/salesforce"], {413}),
    ("/admin/leads/hubspot/1/revert", False, {"Content-Type": "application/json"}, {413}),
    ("/admin/leads/hubspot/1/revert", True, {"Content-Type": "application/json"}, {401}),
    ("/admin/leads/hubspot/1/revert", True, READING["/admin/leads/hubspot/1/revert"], {413}),
])
def test_memory_stays_flat_under_8_concurrent_100_mb_posts(server: Server, path: str, chunked: bool,
                                                           headers: dict[str, str], statuses: set[int]) -> None:
    pid = server.process.pid
    clear_refs = Path(f"/proc/{pid}/clear_refs")
    clear_refs.write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    before = memory_kb(pid)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: post_100_mb(server, path, chunked, headers), range(8)))
    after = memory_kb(pid)
    growth_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    assert growth_mb < 50, f"peak RSS grew by {growth_mb:.0f} MB"
    # Every client was cut off long before its 100 MB (kernel buffers hold a few MB in flight).
    assert all(sent < 40 * MB for _, sent in results), [sent // MB for _, sent in results]
    # Each got its answer, or a reset that overtook it while still sending (the server closes such
    # connections); a declared length is always answered before any body byte is sent.
    assert {status for status, _ in results} <= {*statuses, None}
    if not chunked:
        assert [status for status, _ in results] == [next(iter(statuses))] * 8
        assert all(sent == 0 for _, sent in results)
    assert server.process.poll() is None  # and the server is still up
