"""A second `sidecar run` on the same SQLite file is refused with one line; the lock goes with the
process that held it, even when that process is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.store.db import make_engine
from sidecar.store.locks import AnotherInstance, single_instance
from tests.e2e.test_run_process import ROOT, TOKEN, closed_port, sidecar, wait_for


def test_a_second_lock_on_the_same_file_is_refused_and_a_released_one_is_free(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sidecar.db'}")
    with single_instance(engine):
        with pytest.raises(AnotherInstance) as refused, single_instance(engine):
            pass
        assert str(refused.value) == (f"another sidecar is already running on sidecar.db (pid {os.getpid()}); "
                                      "SQLite allows one instance — use PostgreSQL for several")
        with single_instance(make_engine(f"sqlite:///{tmp_path / 'other.db'}")):
            pass  # another file is another instance
    with single_instance(engine):
        pass  # released when the first one ended


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sidecar.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sidecar.store.db import make_engine; "
         "from sidecar.store.locks import single_instance\n"
         f"with single_instance(make_engine({url!r})):\n print('held', flush=True); time.sleep(120)"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AnotherInstance, match=f"pid {holder.pid}"), single_instance(make_engine(url)):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    with single_instance(make_engine(url)):
        pass


@pytest.mark.slow
def test_two_sidecar_runs_on_one_sqlite_file_the_second_is_refused_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update({"PYTHONPATH": str(ROOT), "SIDECAR_DATABASE_URL": f"sqlite:///{tmp_path / 'sidecar.db'}",
                "SIDECAR_HUBSPOT_ACCESS_TOKEN": TOKEN,
                "SIDECAR_HUBSPOT_API_BASE": f"http://127.0.0.1:{closed_port()}", "SIDECAR_WEB_PORT": "0"})
    subprocess.run(sidecar("init"), cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    out = tmp_path / "first.log"
    with out.open("wb") as sink:
        first = subprocess.Popen(sidecar("run"), cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: " web http" in out.read_text(), "the first instance's startup summary")
        second = subprocess.run(sidecar("run"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # the first one runs on, untouched
    finally:
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=60)
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.splitlines() == [
        f"error: another sidecar is already running on sidecar.db (pid {first.pid}); SQLite allows one instance — "
        "use PostgreSQL for several"], second.stderr
    assert code == 0, out.read_text()
