"""A tiny threaded HTTP(S) server that the three emulators share.

Each emulator is a `Router` of handlers; the server adds what every emulator needs and the real
APIs have: a request log (JSONL), switchable fault injection, and TLS for Salesforce (the real
simple-salesforce client only builds https:// URLs).
"""

from __future__ import annotations

import json
import random
import re
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(pattern + r"/?$"), handler))

    def dispatch(self, request: Request) -> Response:
        path_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                request.params = {k: v for k, v in match.groupdict().items() if v is not None}
                return handler(request)
        status = 405 if path_matched else 404
        return Response(status, {"error": "not_found", "path": request.path})


FAULT_KINDS = ("latency", "server_error", "rate_limit", "drop", "timeout", "expired_session")


@dataclass
class _Fault:
    kind: str
    rate: float
    remaining: int | None  # None = every matching request, at `rate`
    seconds: float
    path_prefix: str


class FaultPlan:
    """Faults switchable at run time: at a given rate, or on the next N requests."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._random = random.Random(seed)
        self.injected: Counter[str] = Counter()  # faults served, by kind (the chaos run reports them)

    def add(
        self,
        kind: str,
        *,
        rate: float = 1.0,
        next_n: int | None = None,
        seconds: float = 0.0,
        path_prefix: str = "",
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(_Fault(kind, rate, next_n, seconds, path_prefix))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def draw(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if not path.startswith(fault.path_prefix):
                    continue
                if fault.remaining is not None:
                    if fault.remaining <= 0:
                        continue
                    fault.remaining -= 1
                    self.injected[fault.kind] += 1
                    return fault
                if self._random.random() < fault.rate:
                    self.injected[fault.kind] += 1
                    return fault
            return None


SECRET_KEYS = {"password", "client_secret", "token", "access_token", "refresh_token", "security_token",
               "sessionid", "session_id", "sig"}  # sig: the signature in a Teams Workflows URL
_SECRET_XML = re.compile(r"(<(?:\w+:)?(?:password|sessionId)>)[^<]*(</)", re.IGNORECASE)


def redact(body: Any) -> Any:
    """Request logs end up in files people share: never keep passwords or tokens in them."""
    if isinstance(body, dict):
        return {k: "***" if k.lower() in SECRET_KEYS else redact(v) for k, v in body.items()}
    if isinstance(body, list):
        return [redact(item) for item in body]
    if isinstance(body, str):
        return _SECRET_XML.sub(r"\1***\2", body)
    return body


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []

    def record(self, request: Request, status: int) -> None:
        body: Any
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            text = request.body.decode(errors="replace")
            form = parse_qs(text, keep_blank_values=True) if "=" in text and "<" not in text else None
            body = {k: v[0] if len(v) == 1 else v for k, v in form.items()} if form else text
        body = redact(body)
        query = redact({k: v for k, v in request.query.items()})
        with self._lock:
            self.entries.append(
                {"method": request.method, "path": request.path, "query": query,
                 "body": body, "status": status}
            )

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def write_jsonl(self, path: Path, service: str) -> None:
        with self._lock, path.open("a", encoding="utf-8") as out:
            for entry in self.entries:
                out.write(json.dumps({"service": service, **entry}, default=str) + "\n")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that fails the TLS handshake or hangs up is the client's business (tests provoke
        # it on purpose); anything else is an emulator bug and is printed as usual.
        error = sys.exc_info()[1]
        if not isinstance(error, ssl.SSLError | ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class Emulator:
    """Base of the three emulators: owns the router, faults, log and the server thread."""

    service = "emulator"

    def __init__(self, seed: int = 0, clock: Callable[[], datetime] | None = None) -> None:
        # Record timestamps (SystemModstamp, lastmodifieddate...) come from this clock so that the
        # demo and tests can run the emulated org on virtual time.
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.router = Router()
        self.faults = FaultPlan(seed)
        self.log = RequestLog()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scheme = "http"

    # Each emulator renders the vendor's own shape of these faults.
    def fault_response(self, kind: str, request: Request) -> Response:
        if kind == "rate_limit":
            return Response(429, {"error": "rate limited"}, {"Retry-After": "1"})
        if kind == "expired_session":
            return Response(401, {"error": "expired session"})
        return Response(503, {"error": "service unavailable"})

    def handle(self, request: Request) -> Response:
        return self.router.dispatch(request)

    def start(self, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> str:
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms a response).
            disable_nagle_algorithm = True

            def setup(self) -> None:
                # TLS handshake here, in the connection's own thread with a timeout, so one client
                # that connects and stalls cannot freeze the accept loop.
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.settimeout(10)
                    self.request.do_handshake()
                    self.request.settimeout(None)
                super().setup()

            def log_message(self, format: str, *args: Any) -> None:  # "format" is the stdlib name
                return  # the RequestLog is the log; stderr noise helps nobody

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                fault = emulator.faults.draw(parts.path)
                if fault is not None and fault.kind == "drop":
                    emulator.log.record(request, 0)
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None and fault.kind in ("latency", "timeout"):
                    time.sleep(fault.seconds)
                    fault = None if fault.kind == "latency" else fault
                if fault is not None:
                    response = emulator.fault_response(fault.kind, request)
                else:
                    try:
                        response = emulator.handle(request)
                    except Exception as exc:  # an emulator bug must be a 500, not a hang
                        response = Response(500, {"error": "emulator_error", "detail": repr(exc)})
                emulator.log.record(request, response.status)
                payload = response.encoded()
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        server = _Server(("127.0.0.1", port), _Handler)
        server.daemon_threads = True
        if ssl_context is not None:
            server.socket = ssl_context.wrap_socket(server.socket, server_side=True,
                                                    do_handshake_on_connect=False)
            self.scheme = "https"
        self._server = server
        # A short poll interval makes stop() quick; tests start and stop servers often.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.service, daemon=True)
        self._thread.start()
        return self.url

    @property
    def port(self) -> int:
        assert self._server is not None, "emulator not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
