"""What every scripts/bench_*.py shares: the machine it ran on, the result file, the target rows
that scripts/bench_doc.py turns into docs/BENCHMARKS.md, and a real `sidecar run` child process.

A result file is JSON with at least `benchmark`, `machine` and `targets`; each target is
{"name", "target", "measured", "met" (true/false/null when not measured), "why"}. The doc reads
nothing else, so a script may add any detail beside them."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "scripts" / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Taken at the start of a run: the load average says how busy the machine already was."""
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": load,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds")}


def target(name: str, goal: str, measured: str, met: bool | None, why: str = "", *,
           value: float | None = None, limit: float | None = None, better: str = "lower") -> dict[str, Any]:
    """One target row. With `value` and `limit` the doc says by how much it is met or missed
    (`better`: "lower" when the value must stay under the limit, "higher" when it must reach it)."""
    return {"name": name, "target": goal, "measured": measured, "met": met, "why": why,
            "value": value, "limit": limit, "better": better}


def load_text(info: dict[str, Any]) -> str:
    """The load average of `machine()` as one table cell ("4.56 / 6.24 / 7.97")."""
    load = info.get("load_average_at_start")
    return " / ".join(str(x) for x in load) if isinstance(load, list) else "?"


def kept_rows(name: str, fresh: Sequence[dict[str, Any]], key: Sequence[str]) -> list[dict[str, Any]]:
    """The previous result file's rows (earlier labels: before/after figures, the other database)
    with every row of `fresh` replacing the one of the same `key` values; fresh rows come last."""
    path = RESULTS / f"{name}.json"
    try:
        old = json.loads(path.read_text()).get("rows", []) if path.exists() else []
    except ValueError:
        old = []
    ids = {tuple(row.get(k) for k in key) for row in fresh}
    return [row for row in old if isinstance(row, dict) and tuple(row.get(k) for k in key) not in ids] + list(fresh)


def write(name: str, result: dict[str, Any]) -> Path:
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written {path.relative_to(ROOT)}")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def sidecar_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from sidecar.cli import app; sys.argv[0] = 'sidecar'; app()", *args]


def sidecar_env(**settings: str) -> dict[str, str]:
    """The environment of a child `sidecar`: this worktree's code, no inherited SIDECAR_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"SIDECAR_{k.upper()}": v for k, v in settings.items()})
    return env


class SidecarProcess:
    """`sidecar run` as a child process; its output goes to `log`. Stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path, command: list[str] | None = None) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(command or sidecar_command("run"), cwd=cwd, env=env, stdout=sink,
                                            stderr=subprocess.STDOUT)

    def url(self, deadline_s: float = 120.0) -> str:
        line = wait_for(lambda: next((x for x in self.log.read_text().splitlines() if " web http" in x), None),
                        "the startup summary of `sidecar run`", deadline_s, self)
        return str(line.split(" web ", 1)[1].split()[0])

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident set size in MB, from /proc."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
                      if ":" in line)
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = 60.0,
             child: SidecarProcess | None = None) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        if child is not None and child.process.poll() is not None:
            raise SystemExit(f"`sidecar run` exited while waiting for {what}; its log: {child.log}\n"
                             + child.log.read_text()[-2000:])
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def routed_sidecar_command(salesforce_port: int, ca_bundle: Path) -> list[str]:
    """`sidecar run` trusting the Salesforce emulator's throwaway CA (tests/e2e/routed_run.py)."""
    return [sys.executable, "-m", "tests.e2e.routed_run", str(salesforce_port), str(ca_bundle)]
