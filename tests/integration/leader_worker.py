"""A sidecar that becomes the poll leader and is then killed: used by test_multi_instance_pg.py as a
subprocess.

Usage: python -m tests.integration.leader_worker DATABASE_URL
It runs the `poll` job (on an injected clock) as `sidecar run` would, against a
CRM whose change feed prints "polling" and then never returns (it waits on stdin): the process
holds the poll lock until the test SIGKILLs it. Its database connections carry the application
name below, so the test can see when PostgreSQL has ended them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from sidecar import jobs
from sidecar.domain import Crm, LeadSnapshot
from sidecar.jobs import Runtime
from sidecar.outbox import Ports
from sidecar.ports import ChangePage, Cursor, DirectoryUser
from sidecar.store.db import make_engine, session_factory
from tests.support import context

APPLICATION_NAME = "sidecar-leader-worker"
START = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


class HangingCrm:
    """A CRM read that is still running when the process dies."""

    crm = Crm.SALESFORCE

    def read_changes(self, cursor: Cursor) -> Iterator[ChangePage]:
        print("polling", flush=True)
        sys.stdin.read()  # blocks until the test kills us (or closes stdin)
        return iter(())

    def read_leads(self, crm_ids: Sequence[str]) -> list[LeadSnapshot]:
        return []

    def read_users(self) -> list[DirectoryUser]:
        return []

    def record_url(self, crm_id: str) -> str:
        return crm_id


def with_application_name(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={APPLICATION_NAME}"


def main(database_url: str) -> None:
    sessions = session_factory(make_engine(with_application_name(database_url)))
    rt = Runtime(sessions, context(), {"salesforce": HangingCrm()}, Ports(None, {}))
    jobs.poll_all(rt, START)


if __name__ == "__main__":
    main(sys.argv[1])
