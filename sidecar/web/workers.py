"""Web workers: with SIDECAR_WEB_WORKERS = N > 1, `sidecar run` serves its web routes from N
processes sharing one listening socket, beside the process that runs the jobs.

One Python process runs one thread at a time, so in-process receivers share the processor with
the jobs (the webhook drain applies leads, the dispatcher calls the CRMs): webhook latency then
follows the jobs' load. Worker processes parse, check and store webhooks on their own cores.

The parent binds the socket (so a taken port is reported at start, as before) and hands it to each
worker (multiprocessing's spawn start method: a fresh interpreter, no copied threads or locks).
Each worker builds the same app from the same settings and rings the parent's doorbell, a shared
Event, when it stored webhooks. Workers are part of one run: the SQLite one-instance lock is held
by the parent only, so a second `sidecar run` is still refused; on SQLite more than one worker is
refused at start (see `workers_problem`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("sidecar.web")
STOP_GRACE_S = 10  # a worker finishing its requests after SIGTERM


def workers_problem(workers: int, dialect: str) -> str | None:
    """One line when `workers` cannot run on this database, else None."""
    if workers > 1 and dialect == "sqlite":
        return (f"SIDECAR_WEB_WORKERS={workers} needs PostgreSQL: on SQLite every write takes the file's one "
                "lock, which other processes can only poll for (webhooks would wait up to 5 s and then fail); "
                "set SIDECAR_WEB_WORKERS=1 or use a postgresql:// SIDECAR_DATABASE_URL")
    return None


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening; OSError when the address is taken or not this machine's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _serve(sock: socket.socket, rung: Any, stale_after_s: float) -> None:
    """A worker's main: the app of `sidecar run` on the shared socket until SIGTERM/SIGINT."""
    import uvicorn

    from sidecar import bench_clock, logs, wiring
    from sidecar.doorbell import Doorbell
    from sidecar.settings import Settings
    from sidecar.store.db import make_engine, session_factory
    from sidecar.web.app import create_app, server_config

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    clock = bench_clock.from_env(os.environ, time.time) or (lambda: datetime.now(UTC))
    sessions = session_factory(make_engine(settings.database_url))
    runtime = wiring.build_runtime(settings, sessions, clock=clock)  # the engine context the routes use
    routers = wiring.web_routers(settings, sessions, runtime.ctx, clock, Doorbell(rung).ring)
    # No in-memory job failures here (they live in the parent): /readyz reports the store's view.
    app = create_app(sessions, routers, None, max_body_bytes=settings.max_body_bytes, clock=clock,
                     poll_stale_after=timedelta(seconds=stale_after_s))
    uvicorn.Server(server_config(app, settings.web_host, 0)).run(sockets=[sock])


class WebWorkers:
    """N worker processes on one socket; `start` returns the URL they listen on."""

    def __init__(self, count: int, host: str, port: int, stale_after: timedelta) -> None:
        self.count, self.host, self.port, self.stale_after = count, host, port, stale_after
        self._context = multiprocessing.get_context("spawn")
        self.rung = self._context.Event()  # the doorbell's flag, shared with the parent
        self._processes: list[Any] = []
        self._socket: socket.socket | None = None

    def start(self) -> str:
        self._socket = listening_socket(self.host, self.port)
        for index in range(self.count):
            process = self._context.Process(target=_serve, name=f"sidecar-web-{index + 1}", daemon=True,
                                            args=(self._socket, self.rung, self.stale_after.total_seconds()))
            process.start()
            self._processes.append(process)
        port = self._socket.getsockname()[1]
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{port}"

    def stop(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in self._processes:
            process.join(STOP_GRACE_S)
            if process.is_alive():
                log.warning("web worker %s did not stop in %d s; killed", process.name, STOP_GRACE_S)
                process.kill()
                process.join(1)
        if self._socket is not None:
            self._socket.close()
