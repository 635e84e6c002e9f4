"""`sidecar demo`'s closing story per escalated lead, checked against the audit of a scripted morning,
and `--serve` keeping the dashboard up after the run until SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from sidecar import wiring_demo
from sidecar.cli_demo import story_lines

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "config" / "scenarios" / "paid-social-morning.yaml"
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def morning(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("story")
    wiring_demo.run_demo(crm="salesforce", seed=1, scenario=SCENARIO, policy=None, speed=None,
                    duration=wiring_demo.parse_duration("4h"), out=out, port=0)
    return out


def _audit(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]


def _local(row: dict[str, Any]) -> str:
    return datetime.fromisoformat(row["at"]).astimezone(NY).strftime("%H:%M")


def test_one_story_per_escalated_lead_told_from_the_audit(morning: Path) -> None:
    rows = _audit(morning)
    (story,) = story_lines(morning / "demo.db")  # Jonas was called in time: no story for him
    aisha = [r for r in rows if r["lead_name"] == "Aisha Al-Mansoori" and r["pattern"] == "sla" and r["action"]]
    first_move = next(r for r in aisha if r["action"] == "reassign")
    # The scenario's expectations (08:48, 09:00, 09:30 New York), the new owner named as the audit names him.
    assert story.startswith(f"Aisha Al-Mansoori (salesforce {aisha[0]['lead_id']}, owner {aisha[0]['owner_name']}, "
                            f"{aisha[0]['team_name']}): warned 08:48 → breach 09:00 → reassigned to "
                            f"{first_move['to_owner_name']} 09:30")
    assert first_move["owner_name"] != first_move["to_owner_name"] and _local(first_move) == "09:30"
    # Line by line: every typed ladder step of the lead is one step of the story, in order and time.
    told = story.split(": ", 1)[1].rsplit("  [", 1)[0].split(" → ")
    assert len(told) == len(aisha)
    for step, row in zip(told, aisha, strict=True):
        assert step.endswith(_local(row))
        if row["action"] == "reassign":
            assert step == f"reassigned to {row['to_owner_name']} {_local(row)}"
        else:
            assert step.split()[0] == ("warned" if row["details"]["fraction"] < 1 else "breach")
    assert story.endswith("[America/New_York]")


def _sidecar(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from sidecar.cli import app; sys.argv[0] = 'sidecar'; app()", *args]


@pytest.mark.slow
def test_serve_keeps_the_dashboard_up_after_the_run_until_sigterm(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "200",
           "NO_PROXY": "127.0.0.1,localhost"}
    process = subprocess.Popen(_sidecar("demo", "--crm", "hubspot", "--duration", "2h", "--out", str(tmp_path / "out"),
                                        "--serve"), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # blocks until the run is over and the serve line is printed
            seen.append(line)
            if "serving until Ctrl-C or SIGTERM" in line:
                break
        serving = next((line for line in seen if "serving until" in line), None)
        assert serving is not None, "".join(seen)
        url = serving.split("dashboard ", 1)[1].split()[0]
        http = requests.Session()
        http.trust_env = False
        answer = None
        for _ in range(50):  # the server is up before the line is printed; a few tries for a slow machine
            try:
                answer = http.get(url, allow_redirects=False, timeout=5)
                break
            except requests.ConnectionError:
                continue
        assert answer is not None and answer.status_code in (200, 303)  # the login page, or a redirect to it
        assert http.get(url.replace("/dashboard/", "/healthz"), timeout=5).json()["ok"] is True
        assert process.poll() is None  # still serving after the run
        assert (tmp_path / "out" / "audit.jsonl").exists()  # the run's files are written before serving
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, "".join(seen) + rest
        assert "Traceback" not in "".join(seen) + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
