"""Web worker stand-ins and a `sidecar run` stand-in for tests/integration/test_web_workers.py.

`hold` is a worker that serves nothing: it keeps the shared listening socket (its argument) until
its parent is gone, exactly as a real worker's `stop_with_parent` lets it. Run as a script, this
module is the parent: it starts the workers, prints its port and the workers' pids, and waits to be
killed.
"""

from __future__ import annotations

import socket
import sys
import threading
from datetime import timedelta
from typing import Any

from sidecar.web.workers import WebWorkers, _serve, stop_with_parent


def hold(sock: socket.socket, rung: Any, stale_after_s: float) -> None:
    done = threading.Event()
    stop_with_parent(done.set)
    done.wait()


if __name__ == "__main__":
    workers = WebWorkers(2, "127.0.0.1", 0, timedelta(minutes=15), target=_serve if sys.argv[1] == "app" else hold)
    url = workers.start()
    print(url.rsplit(":", 1)[1], *workers.pids(), flush=True)
    threading.Event().wait()  # until SIGKILL
