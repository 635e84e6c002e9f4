"""The FastAPI app. Connectors own their receivers (routers); this module owns the app, health and
the web server; the intake callback that stores announced lead ids lives in `sidecar.web.intake`."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sidecar.failures import FailureTracker
from sidecar.store.db import reading
from sidecar.store.models import IntakeItem, SyncCursor
from sidecar.web.counters import SKIPPED, WebhookRequests
from sidecar.web.guard import BearerGuard, GuardedRouter, under
from sidecar.web.intake import intake_callback
from sidecar.web.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit

__all__ = ["BackgroundServer", "ListenError", "create_app", "intake_callback", "without_paths"]


def create_app(sessions: sessionmaker[Session], routers: Sequence[APIRouter],
               failures: FailureTracker | None = None, *,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, clock: Callable[[], datetime] | None = None,
               poll_stale_after: timedelta | None = None) -> FastAPI:
    """`/healthz` is liveness (the process answers and its database too: restart it if not);
    `/readyz` is readiness (503 while a CRM poll or a job keeps failing, the database cannot be
    read, or a CRM's last successful poll is older than `poll_stale_after` on `clock`, as when the
    poll job stopped running: alert, do not restart).

    Every route, including ones added later, sits behind the body limit (`sidecar.web.limits`);
    a `GuardedRouter` (the admin API) behind its token (`sidecar.web.guard`), checked before any
    body is read, and its part of the OpenAPI schema only at `<prefix>/openapi.json`, with the token.
    No CORS middleware: browsers on other origins get no access to anything."""
    app = FastAPI(title="Lead-SLA sidecar", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        with reading(sessions) as session:  # answers even while a job holds the write lock
            waiting = session.scalar(select(func.count()).select_from(IntakeItem)
                                     .where(IntakeItem.processed_at.is_(None)))
        return {"ok": True, "intake_waiting": waiting, "intake_skipped": dict(SKIPPED)}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        failing: list[dict[str, Any]] = [
            {"job": f.job, "crm": f.crm or None, "since": f.since.isoformat(), "tries": f.tries,
             "cause": f.cause, "next_try": f.next_try.isoformat()}
            for f in (failures.failing() if failures is not None else [])]
        failing += _store_problems(sessions, {f["crm"] for f in failing if f["job"] == "poll"}, clock,
                                   poll_stale_after)
        return JSONResponse({"ready": not failing, "failing": failing}, status_code=503 if failing else 200)

    for router in routers:
        app.include_router(router)
    _guard(app, [r for r in routers if isinstance(r, GuardedRouter)])
    # Added last, so outermost: the limit holds before any guard, route or parser sees the request.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(WebhookRequests, router=app.router)  # outside the limit: its 413s count too
    return app


def _store_problems(sessions: sessionmaker[Session], failing_polls: set[str | None],
                    clock: Callable[[], datetime] | None, stale_after: timedelta | None) -> list[dict[str, Any]]:
    """Readiness problems the store shows: it cannot be read, or a CRM's last good poll is too old
    (a CRM whose poll is already reported failing is not reported twice; one never polled is not stale)."""
    try:
        with reading(sessions) as session:
            polls = [(c.crm, c.last_poll_at) for c in session.scalars(
                select(SyncCursor).where(SyncCursor.stream == "leads", SyncCursor.last_poll_at.is_not(None)))]
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()[0][:200]
        return [{"job": "database", "crm": None, "since": None, "tries": 1, "cause": f"cannot read the database: "
                 f"{cause}", "next_try": None}]
    if clock is None or stale_after is None:
        return []
    now = clock()
    return [{"job": "poll", "crm": crm, "since": at.isoformat(), "tries": 0,
             "cause": f"no successful poll for {int((now - at).total_seconds() // 60)} min (the poll job is "
                      "not running?)", "next_try": None}
            for crm, at in polls if at is not None and now - at > stale_after and crm not in failing_polls]


def _guard(app: FastAPI, guarded: Sequence[GuardedRouter]) -> None:
    """Token middleware per guarded prefix; the public schema leaves their paths out."""
    prefixes = [r.prefix for r in guarded]

    def full_schema() -> dict[str, Any]:
        return get_openapi(title=app.title, version=app.version, routes=app.routes)

    def public_schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = without_paths(full_schema(), prefixes)
        return app.openapi_schema

    app.openapi = public_schema  # type: ignore[method-assign]  # FastAPI's documented override
    for router in guarded:
        app.add_middleware(BearerGuard, prefix=router.prefix, token=router.token)
        app.add_api_route(f"{router.prefix}/openapi.json", full_schema, include_in_schema=False)


def without_paths(schema: dict[str, Any], prefixes: Sequence[str]) -> dict[str, Any]:
    """`schema` without the paths under `prefixes` and without the components only they used."""
    paths = {p: v for p, v in schema.get("paths", {}).items() if not any(under(p, x) for x in prefixes)}
    components = schema.get("components", {}).get("schemas", {})
    used: set[str] = set()
    todo = _refs(paths)
    while todo:
        name = todo.pop()
        if name not in used and name in components:
            used.add(name)
            todo |= _refs(components[name])
    kept = {**schema, "paths": paths}
    if "components" in schema:
        kept["components"] = {**schema["components"], "schemas": {k: v for k, v in components.items() if k in used}}
    return kept


def _refs(node: object) -> set[str]:
    """Names of the component schemas `node` refers to ("#/components/schemas/<name>")."""
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


class ListenError(RuntimeError):
    """The web server could not open its port; the message names the address."""


# Requests served at once per web process; more wait in the listen backlog. Each may hold a body of
# up to SIDECAR_MAX_BODY_BYTES, so this bounds memory; webhook senders keep few connections open.
MAX_CONCURRENT_REQUESTS = 512
BACKLOG = 2048  # a burst of new connections waits here instead of being refused


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def server_config(app: FastAPI | str, host: str, port: int, *, factory: bool = False) -> uvicorn.Config:
    """The web server's settings, the same in-process and in every web worker. httptools and uvloop
    (C parsers and event loop: about half the time per webhook of h11 and asyncio) when installed,
    the pure-Python ones otherwise. No access log: one line per webhook would drown the operator's
    log (problems are logged by the routes)."""
    return uvicorn.Config(app, host=host, port=port, factory=factory, log_level="warning", lifespan="off",
                          access_log=False, log_config=None, http="httptools" if _installed("httptools") else "h11",
                          loop="uvloop" if _installed("uvloop") else "asyncio",
                          limit_concurrency=MAX_CONCURRENT_REQUESTS, backlog=BACKLOG)


class BackgroundServer:
    """uvicorn in a thread (the demo and tests); `sidecar run` uses the same app."""

    def __init__(self, app: FastAPI, port: int = 0, host: str = "127.0.0.1") -> None:
        self._server = uvicorn.Server(server_config(app, host, port))
        self._host, self._port = host, port
        self._thread = threading.Thread(target=self._server.run, name="sidecar-web", daemon=True)

    def start(self) -> str:
        self._thread.start()
        while not self._server.started:  # startup takes a few ms; nothing to inject here
            if not self._thread.is_alive():
                raise ListenError(f"cannot listen on {self._host}:{self._port}: the port is in use by another "
                                  "process, or the address is not this machine's")
            self._thread.join(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
