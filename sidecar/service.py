"""What `sidecar run` does once logging is set up: build the runtime from settings, serve the web
receivers, log a short startup summary, run the jobs until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

import sidecar
from sidecar import outbox, sync
from sidecar.engine.policies import PolicyBook
from sidecar.jobs import Runtime
from sidecar.settings import Settings
from sidecar.store.db import transaction
from sidecar.store.locks import AnotherInstance, single_instance
from sidecar.store.reachable import until_reachable

log = logging.getLogger("sidecar.run")


class CannotStart(ValueError):
    """A condition the admin fixes (nothing configured, port taken); the message says what to do."""


def safe_database_url(url: str) -> str:
    """The database URL as an operator may see it: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def policy_line(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as session:
        try:
            version, policy = PolicyBook().active(session)
        except LookupError:
            return "policy: none recorded yet (run `sidecar init`)"
    return f"policy {version} {policy.label!r}" if policy.label else f"policy {version}"


def summary(settings: Settings, runtime: Runtime, sessions: sessionmaker[Session], listen_url: str,
            paths: list[str]) -> list[str]:
    """Two lines: what runs against what, and where it can be reached. No secret is in them."""
    slack = "Slack on" if settings.slack_bot_token else "Slack off (no SIDECAR_SLACK_BOT_TOKEN)"
    public = settings.public_url or "not set (SIDECAR_PUBLIC_URL)"
    return [
        f"sidecar {sidecar.__version__} starting: database {safe_database_url(settings.database_url)}, "
        f"{policy_line(sessions)}, CRMs {', '.join(runtime.readers)}, {slack}",
        f"web {listen_url} (public URL {public}"
        + (f", {settings.web_workers} worker processes" if settings.web_workers > 1 else "")
        + f"): {', '.join(paths)}; "
        f"dashboard {(settings.public_url or listen_url).rstrip('/')}/dashboard/ "
        + ("(log in with a SIDECAR_DASHBOARD_USERS token)" if settings.dashboard_users or settings.admin_token
           else "(set SIDECAR_DASHBOARD_USERS to log in)"),
    ]


def run(settings: Settings, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
    """Refuses to start beside another `sidecar run` on the same SQLite file (see
    sidecar.store.locks.single_instance); the lock is held until this returns."""
    try:
        with single_instance(sessions.kw["bind"]):
            _run(settings, sessions, clock)
    except AnotherInstance as exc:
        raise CannotStart(str(exc)) from None


def _run(settings: Settings, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
    from sidecar import scheduler, wiring
    from sidecar.doorbell import Doorbell
    from sidecar.web.app import BackgroundServer, ListenError, create_app
    from sidecar.web.workers import WebWorkers, workers_problem

    problem = workers_problem(settings.web_workers, sessions.kw["bind"].dialect.name)
    if problem:
        raise CannotStart(problem)
    runtime = wiring.build_runtime(settings, sessions, clock=clock)
    if not runtime.readers:
        raise CannotStart("no CRM configured: set Salesforce or HubSpot credentials in .env (see .env.example)")
    from sidecar.web.auth import UsersError

    doorbell = Doorbell()
    try:
        routers = wiring.web_routers(settings, sessions, runtime.ctx, clock, doorbell.ring)
    except UsersError as exc:
        raise CannotStart(str(exc)) from exc
    paths = ["/healthz", "/readyz", *sorted({path for r in routers for route in r.routes
                                            if (path := getattr(route, "path", "")) and path != "/"
                                            and not path.startswith(("/dashboard/", "/api/"))})]
    # Polls may slow to one per 10 minutes near the daily API limit (connectors/quota.py): stale beyond that.
    stale = timedelta(seconds=max(3 * settings.poll_interval_seconds, 15 * 60))
    web: BackgroundServer | WebWorkers
    if settings.web_workers > 1:  # processes of their own (sidecar.web.workers), ringing a shared doorbell
        web = WebWorkers(settings.web_workers, settings.web_host, settings.web_port, stale)
        doorbell = Doorbell(web.rung)
    else:
        web = BackgroundServer(create_app(sessions, routers, runtime.failures,
                                          max_body_bytes=settings.max_body_bytes, clock=clock,
                                          poll_stale_after=stale), settings.web_port, settings.web_host)
    try:
        listen_url = web.start()
    except (ListenError, OSError) as exc:
        where = f"cannot listen on {settings.web_host}:{settings.web_port}: {exc}" if isinstance(exc, OSError) \
            else str(exc)
        raise CannotStart(f"{where} (set SIDECAR_WEB_PORT or SIDECAR_WEB_HOST)") from exc
    try:
        starting = "database unreachable at start"  # e.g. PostgreSQL restarting: waited for (store.reachable)
        for line in until_reachable(lambda: list(summary(settings, runtime, sessions, listen_url, paths)), starting):
            log.info(line)
        # Before any job: see their docstrings (claims and webhook ids a killed process left behind).
        until_reachable(lambda: outbox.release_orphaned_claims(sessions, clock()), starting)
        until_reachable(lambda: sync.release_orphaned_intake(sessions), starting)
        scheduler.run_forever(runtime, clock, settings.job_intervals(),
                              timedelta(seconds=settings.backoff_cap_seconds), doorbell)
    finally:
        web.stop()
