"""The chaos run, CI-sized: two `sidecar run` processes on PostgreSQL against the faulty emulators (each
fault kind at 8 %) for two simulated days, ten SIGKILLs; nothing lost, nothing written twice, no
person's owner change clobbered.

Needs SIDECAR_TEST_DATABASE_URL (PostgreSQL, a role that may CREATE DATABASE: the run gets a database
of its own and drops it). PostgreSQL itself is not restarted here (the shared CI server); the full
run, scripts/chaos_run.py with its private cluster, does that. Bounded: the run's own wall budget is
80 s for the simulated days plus at most 60 s of quiet tail; the subprocess timeout stops anything longer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
URL = os.environ.get("SIDECAR_TEST_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(not URL.startswith("postgresql"),
                                reason="the chaos run needs PostgreSQL (SIDECAR_TEST_DATABASE_URL)")


def test_two_instances_killed_ten_times_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos_run.py"), "--instances", "2", "--kills", "10", "--days", "2",
         "--wall-seconds", "80", "--tail-seconds", "60", "--fault-rate", "0.08", "--database-url", URL,
         "--json-out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert out.exists(), done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["kills"] == 10
    injected = figures["faults_injected"]
    # Faults are on while the simulated days last (the tail is quiet); most escalations of a day's leads fall
    # on the next business day, hence two days: at 0.08 per kind ~25 faults, of several kinds.
    assert sum(injected.values()) >= 8 and len(injected) >= 3, injected
    assert figures["steps_checked"] > 0 and figures["effects_checked"] > 0
    assert figures["lost_steps"] == 0, figures["details"]["steps"]
    assert figures["duplicate_steps"] == 0
    assert figures["duplicate_crm_writes"] == 0, figures["details"]["crm"]
    assert figures["lost_crm_writes"] == 0, figures["details"]["crm"]
    assert figures["clobbered_human_owner_changes"] == 0, figures["details"]["owner_changes"]
    assert figures["slack_lost"] == 0 and figures["slack_duplicates"] <= figures["kills"]
    assert figures["outbox_left"] == 0, figures["details"]["outbox"]
    assert figures["dead_without_reason"] == 0
    assert figures["ok"] is True and done.returncode == 0
