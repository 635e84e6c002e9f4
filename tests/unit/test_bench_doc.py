"""scripts/bench_doc.py renders docs/BENCHMARKS.md from result files: verdicts, margins, the machine,
absent and unreadable files (correctness of the rendering only; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def bench_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_doc", ROOT / "scripts" / "bench_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURE = {
    "benchmark": "API calls vs the minimum the APIs allow",
    "machine": {"cpus": 2, "cpu_model": "Test CPU 3000", "python": "3.11.7",
                "load_average_at_start": [3.5, 2.0, 1.25], "started_at": "2026-12-02T18:00:00+00:00"},
    "targets": [
        {"name": "salesforce: 1,000 tasks", "target": "<= 5.25 calls", "measured": "5 calls", "met": True,
         "why": "", "value": 5, "limit": 5.25, "better": "lower"},
        {"name": "hubspot: idle poll", "target": "1 call", "measured": "5 calls", "met": False,
         "why": "one search per object type", "value": 5, "limit": 1, "better": "lower"},
        {"name": "intake p99 | 2 workers", "target": ">= 1000 req/s", "measured": "800 req/s", "met": False,
         "why": "2 shared cores", "value": 800, "limit": 1000, "better": "higher"},
        {"name": "intake with 2 workers", "target": ">= 1000 req/s", "measured": "not measured", "met": None,
         "why": "no SIDECAR_WEB_WORKERS"},
        {"name": "2 instances: throughput", "target": "more steps/s", "measured": "1.6x", "met": None, "why": ""},
    ],
    "rows": [{"crm": "hubspot", "case": "idle poll", "calls": 5}],
}


def test_renders_targets_verdicts_margins_machine_and_absent_files(tmp_path: Path) -> None:
    (tmp_path / "bench_api_cost.json").write_text(json.dumps(FIXTURE))
    (tmp_path / "bench_burst.json").write_text(json.dumps({"rows": [{"database": "sqlite", "steps_per_s": 4000}]}))
    (tmp_path / "bench_broken.json").write_text("{not json")
    text = bench_doc().render(tmp_path)

    assert text.startswith("# Benchmarks")
    assert "1 met, 2 not met, 1 not measured, 1 without a threshold." in text
    assert "| intake with 2 workers | >= 1000 req/s | not measured | not measured |" in text
    assert "| 2 instances: throughput | more steps/s | 1.6x | no threshold |" in text
    assert ("| 4. Sync and write cost against the APIs' minimum | hubspot: idle poll | 1 call | 5 calls "
            "| **not met** |") in text
    assert "5.00x the limit (400 % over)" in text  # missed: by how much
    assert "0.95x the limit |" in text  # met, with room to spare
    assert "0.80x the target (20 % short)" in text  # a higher-is-better target missed
    assert "intake p99 \\| 2 workers" in text  # a pipe in a cell does not break the table
    assert "Machine: 2 CPUs, Test CPU 3000, Python 3.11.7, load average at start 3.5 / 2.0 / 1.25" in text
    # perf's file without targets: rendered by its rows, not dropped.
    assert "## 2. Burst throughput" in text and "No targets recorded in this file" in text
    assert "| sqlite | 4000 |" in text
    assert "bench_broken.json could not be read" in text
    # Absent benchmarks are named, not silently skipped.
    assert "1. Firing lag in a real `sidecar run` (`scripts/bench_firing_lag.py`)" in text
    assert "7. Scale-out on PostgreSQL (`scripts/bench_scale_out.py`)" in text
    assert "## 1. Firing lag" not in text


def test_an_empty_results_directory_still_renders(tmp_path: Path) -> None:
    text = bench_doc().render(tmp_path)
    assert "No result file records targets yet." in text
    assert "Not measured in this set of results" in text


def test_the_committed_doc_matches_the_committed_results() -> None:
    """docs/BENCHMARKS.md is generated: rerun `python scripts/bench_doc.py` after a benchmark."""
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text() == bench_doc().render(ROOT / "scripts" / "results")
