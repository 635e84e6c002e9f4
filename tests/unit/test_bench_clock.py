"""SIDECAR_CLOCK, the accelerated test/benchmark clock: shared by processes, refused unless allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sidecar import bench_clock
from sidecar.bench_clock import ClockSettingError

ROOT = Path(__file__).resolve().parents[2]


def test_virtual_time_runs_speed_times_faster_from_its_start() -> None:
    wall = [1_000.0]
    clock = bench_clock.from_env({"SIDECAR_CLOCK": "virtual:5000:1000:60", "SIDECAR_ALLOW_VIRTUAL_CLOCK": "1"},
                                 lambda: wall[0])
    assert clock is not None
    assert clock() == datetime.fromtimestamp(5000, UTC)
    wall[0] += 2.5  # two and a half wall seconds: two and a half virtual minutes
    assert clock() == datetime.fromtimestamp(5000 + 150, UTC)
    assert bench_clock.parse(clock.setting(), lambda: wall[0])() == clock()  # what the chaos run hands on


def test_unset_means_the_wall_clock() -> None:
    assert bench_clock.from_env({}, lambda: 0.0) is None


def test_refused_unless_explicitly_allowed() -> None:
    with pytest.raises(ClockSettingError, match="SIDECAR_ALLOW_VIRTUAL_CLOCK=1"):
        bench_clock.from_env({"SIDECAR_CLOCK": "virtual:0:0:10"}, lambda: 0.0)


@pytest.mark.parametrize("value", ["virtual:1:2", "wall", "virtual:a:0:1", "virtual:0:0:0", "virtual:0:0:-2"])
def test_malformed_values_say_what_to_fix(value: str) -> None:
    with pytest.raises(ClockSettingError, match="SIDECAR_CLOCK"):
        bench_clock.from_env({"SIDECAR_CLOCK": value, "SIDECAR_ALLOW_VIRTUAL_CLOCK": "1"}, lambda: 0.0)


def test_sidecar_run_refuses_a_stray_virtual_clock_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")} | {
        "PYTHONPATH": str(ROOT), "SIDECAR_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
        "SIDECAR_CLOCK": "virtual:0:0:100", "SIDECAR_WEB_PORT": "0"}
    command = "import sys; from sidecar.cli import app; sys.argv[0] = 'sidecar'; app()"
    done = subprocess.run([sys.executable, "-c", command, "run"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    output = (done.stdout + done.stderr).strip()
    assert "SIDECAR_ALLOW_VIRTUAL_CLOCK=1" in output and "Traceback" not in output
    assert len(output.splitlines()) == 1, output
