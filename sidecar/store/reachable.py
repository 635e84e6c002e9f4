"""Startup steps that wait out a database restart instead of ending `sidecar run`.

Once the scheduler runs, a database that goes away is one failing job, retried with backoff
(sidecar.failures). Before that, the migrations and the start-up reads used to end the process
with "database error": in the chaos run an instance restarted while PostgreSQL restarted and died.
A supervisor would start it again, but the issue asks for reconnecting without an operator. So each
of those steps is retried while the database cannot be reached, with a doubling wait, one warning
line and a bound: a database that stays unreachable (a wrong SIDECAR_DATABASE_URL) still ends the
start with the usual one-line error, after `give_up_after` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from sidecar.failures import describe

log = logging.getLogger("sidecar.health")
T = TypeVar("T")
FIRST_WAIT_S, MAX_WAIT_S = 1.0, 15.0


# What PostgreSQL going away or coming back looks like (SQLSTATE class 57P: shutdown, starting up),
# besides the network failing. SQLite's OperationalErrors ("unable to open database file") are
# mistakes to fix, not outages to wait out: they still fail at once.
_GOING_AWAY = ("server closed the connection", "connection refused", "connection reset", "connection timed out",
               "the database system is starting up", "the database system is shutting down",
               "terminating connection due to administrator command")


def database_away(exc: OperationalError) -> bool:
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    return sqlstate.startswith("57P") or any(text in str(exc).lower() for text in _GOING_AWAY)


def until_reachable(step: Callable[[], T], what: str, *, give_up_after: float = 120.0,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """`step()`, retried while it fails because the database is away (see `database_away`); other
    errors pass at once."""
    waited, wait = 0.0, FIRST_WAIT_S
    while True:
        try:
            return step()
        except OperationalError as exc:
            if waited >= give_up_after or not database_away(exc):
                raise
            if waited == 0:
                log.warning("%s: %s; retrying for up to %.0f s", what, describe(exc), give_up_after)
            sleep(wait)
            waited += wait
            wait = min(wait * 2, MAX_WAIT_S)
