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

Watched both ways. The parent waits on its workers' sentinels in a thread: a worker that dies (a
crash, the OOM killer) is logged with its exit code and started again, after a delay that doubles
while it keeps dying young (1 s up to a minute, back to 1 s once one served a minute), so a
worker that cannot start does not spin. Each worker watches its parent the same way
(`multiprocessing.parent_process()`: a pipe whose writing end only the parent holds, so it reads
end-of-file however the parent ended, SIGKILL included) and stops when it is gone: an orphan would
keep the listening port and answer webhooks nobody drains. (Not prctl(PR_SET_PDEATHSIG): it fires
when the parent *thread* that started the worker ends, and the watcher thread starts the restarts.)
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import wait
from typing import Any

from sidecar.web.app import BACKLOG

log = logging.getLogger("sidecar.web")
STOP_GRACE_S = 10  # a worker finishing its requests after SIGTERM
FIRST_RESTART_DELAY_S = 1.0  # a worker that died is started again after this, doubling while it dies young
MAX_RESTART_DELAY_S = 60.0
SERVED_LONG_ENOUGH_S = 60.0  # a worker that lived this long died of something else than its start: delay from 1 s


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
        sock.listen(BACKLOG)
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
    server = uvicorn.Server(server_config(app, settings.web_host, 0))
    stop_with_parent(lambda: setattr(server, "should_exit", True))  # uvicorn finishes its requests, then returns
    server.run(sockets=[sock])


def stop_with_parent(stop: Callable[[], None], grace_s: float = STOP_GRACE_S) -> threading.Thread | None:
    """In a worker: call `stop` once the parent process is gone, however it ended (SIGKILL too), and
    end this process if it is still there `grace_s` later. None outside a multiprocessing child."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return None

    def watch() -> None:
        parent.join()  # its sentinel: end-of-file on a pipe only the parent held open
        log.warning("web worker %s: the sidecar process ended; stopping", os.getpid())
        stop()
        time.sleep(grace_s)  # a daemon thread: a worker that stopped in time has exited before this ends
        log.warning("web worker %s did not stop in %.0f s after its parent ended; exiting", os.getpid(), grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="sidecar-parent-watch", daemon=True)
    thread.start()
    return thread


class RestartDelays:
    """How long a dead worker waits before it is started again: `first_s`, doubling for each death in
    a row up to `max_s`; a worker that had served `steady_s` starts again from `first_s`."""

    def __init__(self, first_s: float = FIRST_RESTART_DELAY_S, max_s: float = MAX_RESTART_DELAY_S,
                 steady_s: float = SERVED_LONG_ENOUGH_S) -> None:
        self.first_s, self.max_s, self.steady_s = first_s, max_s, steady_s
        self._in_a_row: dict[int, int] = {}

    def after_death(self, slot: int, lived_s: float) -> float:
        deaths = 1 if lived_s >= self.steady_s else self._in_a_row.get(slot, 0) + 1
        self._in_a_row[slot] = deaths
        return min(self.max_s, self.first_s * 2.0 ** (deaths - 1))


class WebWorkers:
    """N worker processes on one socket; `start` returns the URL they listen on. A worker that dies
    is started again (see `RestartDelays`); `restarts` counts them."""

    def __init__(self, count: int, host: str, port: int, stale_after: timedelta, *,
                 target: Callable[..., None] = _serve, delays: RestartDelays | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.count, self.host, self.port, self.stale_after = count, host, port, stale_after
        self._context = multiprocessing.get_context("spawn")
        self.rung = self._context.Event()  # the doorbell's flag, shared with the parent
        self._target, self._delays, self._monotonic = target, delays or RestartDelays(), monotonic
        self._processes: list[Any] = []
        self._started_at: list[float] = []
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()
        self._wakeup_r, self._wakeup_w = os.pipe()  # stop() writes here: the watcher's wait returns
        self._watcher: threading.Thread | None = None
        self._changed = threading.Condition()
        self.restarts = 0

    def start(self) -> str:
        self._socket = listening_socket(self.host, self.port)
        for index in range(self.count):
            self._processes.append(self._spawn(index))
            self._started_at.append(self._monotonic())
        self._watcher = threading.Thread(target=self._watch, name="sidecar-web-workers", daemon=True)
        self._watcher.start()
        port = self._socket.getsockname()[1]
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{port}"

    def pids(self) -> list[int | None]:
        return [process.pid for process in self._processes]

    def wait_for_restarts(self, count: int, timeout: float) -> bool:
        """True once `restarts` reached `count`, False if `timeout` seconds passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self.restarts >= count, timeout)

    def _spawn(self, index: int) -> Any:
        process = self._context.Process(target=self._target, name=f"sidecar-web-{index + 1}", daemon=True,
                                        args=(self._socket, self.rung, self.stale_after.total_seconds()))
        process.start()
        return process

    def _watch(self) -> None:
        """Until `stop`: a worker that ends is logged and, after its delay, started again."""
        due: dict[int, float] = {}  # slot -> when its dead worker is started again (self._monotonic)
        while not self._stopping.is_set():
            alive = {self._processes[slot].sentinel: slot for slot in range(self.count) if slot not in due}
            timeout = max(0.0, min(due.values()) - self._monotonic()) if due else None
            ready = wait([self._wakeup_r, *alive], timeout)
            if self._stopping.is_set():
                return
            for sentinel in ready:
                if sentinel in alive:
                    due[alive[sentinel]] = self._died(alive[sentinel])
            for slot, at in sorted(due.items()):
                if at <= self._monotonic():
                    del due[slot]
                    try:
                        self._processes[slot] = self._spawn(slot)
                    except OSError as exc:  # no memory or process slot for it now: try again later
                        due[slot] = self._monotonic() + self._delays.after_death(slot, 0.0)
                        log.error("could not start web worker %d again: %s", slot + 1, exc)
                        continue
                    self._started_at[slot] = self._monotonic()
                    with self._changed:
                        self.restarts += 1
                        self._changed.notify_all()

    def _died(self, slot: int) -> float:
        process = self._processes[slot]
        process.join(1)  # reaped: its exit code is known
        lived = self._monotonic() - self._started_at[slot]
        delay = self._delays.after_death(slot, lived)
        log.warning("web worker %s (pid %s) ended with exit code %s after %.0f s; starting it again in %.0f s",
                    process.name, process.pid, process.exitcode, lived, delay)
        return self._monotonic() + delay

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        os.write(self._wakeup_w, b"\0")
        if self._watcher is not None:
            self._watcher.join()  # before the workers are stopped: it must not start them again
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
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
