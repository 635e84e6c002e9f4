"""Failing outside systems, as an operator wants to hear about them: once, in plain words, with backoff.

A CRM that cannot be reached fails every poll. Instead of a traceback each minute, the jobs report
each failure here, keyed by (job, CRM):

* the first failure is one WARNING line with the cause in plain words and when the next try is
  ("hubspot poll failed: cannot reach api.hubapi.com (connection refused); next try in 1 min");
* the job skips its runs until then; the wait doubles with every further failure, up to a cap;
* an identical failure is not logged again (only once an hour, as a reminder, "still failing");
  a different cause is logged at once;
* the first success after failures logs one recovery line;
* the traceback goes to DEBUG only.

`failing()` is what the readiness endpoint reports. Times are the jobs' injected `now`, so the same
backoff holds on the demo's virtual time. The scheduler's runs and the web server's reads come from
different threads, hence the lock.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.exc import DBAPIError

from sidecar.logs import mask

log = logging.getLogger("sidecar.health")

REMIND_EVERY = timedelta(hours=1)
DEFAULT_BASE = timedelta(minutes=1)


@dataclass(frozen=True)
class Failure:
    job: str
    crm: str  # "" for jobs that are not about one CRM
    since: datetime  # first failure of this streak
    tries: int  # consecutive failures
    cause: str  # plain words, no secrets
    next_try: datetime
    logged_at: datetime


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what caused it, and exceptions carried in args (requests wraps urllib3's)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__, getattr(current, "reason", None))
                 if isinstance(e, BaseException)]
        todo += [a for a in current.args if isinstance(a, BaseException)]


def _host(exc: BaseException) -> str | None:
    """The host a network error was about: urllib3 keeps it on the pool or connection, requests
    on the request."""
    for part in (getattr(exc, "pool", None), getattr(exc, "conn", None)):
        host = getattr(part, "host", None)
        if isinstance(host, str) and host:
            return host
    url = getattr(getattr(exc, "request", None), "url", None)
    return urlsplit(url).hostname if isinstance(url, str) else None


def _network_problem(exc: BaseException) -> str | None:
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, socket.gaierror) or "NameResolution" in type(exc).__name__:
        return "host name not found"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:  # requests', urllib3's own classes
        return "timed out"
    return None


def is_network_problem(exc: BaseException) -> bool:
    """Could not reach the server at all (refused, reset, timed out, unknown host, TLS)."""
    return any(_network_problem(e) for e in _chain(exc))


STORAGE_FULL = ("the database's disk is full: nothing of this run was written (the store is intact) and the "
                "job retries; free space on the volume holding the database (or grow it)")


def storage_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's disk_full (53100), or ENOSPC."""
    for item in _chain(exc):
        if getattr(item, "errno", None) == errno.ENOSPC or getattr(item, "sqlstate", None) == "53100":
            return True
        if "database or disk is full" in str(item) or "No space left on device" in str(item):
            return True
    return False


def describe(exc: BaseException) -> str:
    """What went wrong, in plain words: "cannot reach api.hubapi.com (connection refused)" for a
    network problem, else the error's own first line (connectors word their errors for admins)."""
    if storage_full(exc):
        return STORAGE_FULL
    chain = list(_chain(exc))
    problem = next((p for p in map(_network_problem, chain) if p), None)
    if problem is None and any("Connection refused" in str(e) for e in chain):
        problem = "connection refused"  # urllib3 sometimes keeps only the text
    if problem is not None:
        host = next((h for h in map(_host, chain) if h), None)
        # The driver's error names no host object; every job touches the database, so "the API"
        # would send an operator after the wrong server during a database restart.
        if host is None and any(isinstance(e, DBAPIError) for e in chain):
            host = "the database"
        return f"cannot reach {host or 'the API'} ({problem})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return mask(text[:300])


def describe_wait(wait: timedelta) -> str:
    seconds = round(wait.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _what(job: str, crm: str) -> str:
    return f"{crm} {job}" if crm else job


class FailureTracker:
    """See the module docstring. `bases`: each job's interval, the first wait after a failure."""

    def __init__(self, bases: Mapping[str, timedelta] | None = None, cap: timedelta = timedelta(minutes=10),
                 logger: logging.Logger = log) -> None:
        self.bases = dict(bases or {})
        self.cap = cap
        self.log = logger
        self._lock = threading.Lock()
        self._failing: dict[tuple[str, str], Failure] = {}

    def _base(self, job: str) -> timedelta:
        return self.bases.get(job, DEFAULT_BASE)

    def due(self, job: str, crm: str, now: datetime) -> bool:
        """May `job` try `crm` now? Runs do not land exactly on the planned instant, so a run within
        half an interval of it counts."""
        with self._lock:
            failure = self._failing.get((job, crm))
        return failure is None or now >= failure.next_try - self._base(job) / 2

    def failed(self, job: str, crm: str, now: datetime, exc: BaseException) -> Failure:
        cause = describe(exc)
        with self._lock:
            last = self._failing.get((job, crm))
            tries = last.tries + 1 if last else 1
            wait = min(self._base(job) * 2 ** (tries - 1), max(self.cap, self._base(job)))
            failure = Failure(job, crm, last.since if last else now, tries, cause, now + wait,
                              last.logged_at if last else now)
            tell = last is None or last.cause != cause or now - last.logged_at >= REMIND_EVERY
            if tell:
                failure = replace(failure, logged_at=now)
            self._failing[(job, crm)] = failure
        fields = {"job": job, "crm": crm, "tries": tries, "since": failure.since.isoformat(),
                  "next_try_s": wait.total_seconds(), "cause": cause}
        if tell:
            still = f"still failing since {failure.since:%Y-%m-%d %H:%M}Z ({tries} tries): " if last else "failed: "
            self.log.warning("%s %s%s; next try in %s", _what(job, crm), still, cause, describe_wait(wait),
                             extra=fields)
        self.log.debug("%s failed", _what(job, crm), exc_info=exc, extra=fields)
        return failure

    def succeeded(self, job: str, crm: str, now: datetime) -> None:
        with self._lock:
            failure = self._failing.pop((job, crm), None)
        if failure is not None:
            self.log.info("%s recovered after %s failed tries (failing since %s)", _what(job, crm), failure.tries,
                          f"{failure.since:%Y-%m-%d %H:%M:%S}Z",
                          extra={"job": job, "crm": crm, "tries": failure.tries, "since": failure.since.isoformat()})

    def failing(self) -> list[Failure]:
        with self._lock:
            return sorted(self._failing.values(), key=lambda f: (f.since, f.job, f.crm))
