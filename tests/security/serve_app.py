"""`python -m tests.security.serve_app DIR [MAX_BODY_BYTES]`: the app with every receiver and the
admin API on a SQLite database in DIR, served by uvicorn on a free loopback port (the URL is the
first line printed); it stops when its standard input closes. For tests that need a real server
in a process of its own, e.g. to measure that process's memory."""

from __future__ import annotations

import sys
from pathlib import Path

from sidecar.store.db import make_engine, migrate, session_factory
from sidecar.web.app import BackgroundServer
from tests.security.support import App


def main(directory: str, max_body_bytes: int) -> None:
    engine = make_engine(f"sqlite:///{Path(directory) / 'sidecar.db'}")
    migrate(engine)
    server = BackgroundServer(App(session_factory(engine), max_body_bytes).app, port=0)
    print(server.start(), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5 * 1024 * 1024)
