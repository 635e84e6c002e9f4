"""`sidecar run` while Salesforce is down at start: the receivers come up, /readyz names the failing
login, and once Salesforce answers the next poll logs in and works, without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import make_loopback_tls
from tests.contract.test_salesforce_connector import add_standard_task_fields
from tests.e2e.test_run_process import ROOT, closed_port, sidecar, status, wait_for

PASSWORD, TOKEN = "password", "TOKEN"  # the emulator's integration user


@pytest.mark.slow
def test_a_salesforce_down_at_start_does_not_stop_the_receivers_and_is_polled_once_up(tmp_path: Path) -> None:
    tls = make_loopback_tls(tmp_path / "ca")
    port = closed_port()
    emulator = SalesforceEmulator(clock=lambda: datetime.now(UTC))  # started later, on that port
    add_standard_task_fields(emulator)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update({
        "PYTHONPATH": str(ROOT), "SIDECAR_DATABASE_URL": f"sqlite:///{tmp_path / 'sidecar.db'}",
        "SIDECAR_SF_USERNAME": "integration@example.com", "SIDECAR_SF_PASSWORD": PASSWORD,
        "SIDECAR_SF_SECURITY_TOKEN": TOKEN, "SIDECAR_SF_ORGANIZATION_ID": emulator.org_id,
        "SIDECAR_WEB_PORT": "0", "SIDECAR_POLL_INTERVAL_SECONDS": "1",
        "SIDECAR_DIRECTORY_SYNC_INTERVAL_SECONDS": "1", "SIDECAR_BACKOFF_CAP_SECONDS": "2",
    })
    subprocess.run(sidecar("init"), cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    out = tmp_path / "run.log"
    with out.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "tests.e2e.routed_run", str(port), str(tls.ca_bundle)],
                                   cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        web_line = wait_for(lambda: next((line for line in out.read_text().splitlines() if " web http" in line),
                                         None), "the startup summary")
        assert "/webhooks/salesforce" in web_line  # the receiver is up although Salesforce is not
        url = web_line.split(" web ", 1)[1].split()[0]
        http = requests.Session()
        http.trust_env = False
        assert http.get(f"{url}/healthz", timeout=5).status_code == 200

        def failing_poll() -> tuple[requests.Response] | None:  # a 503 Response is falsy itself
            answer = http.get(f"{url}/readyz", timeout=5)
            return (answer,) if any(f["job"] == "poll" for f in answer.json()["failing"]) else None

        [answer] = wait_for(failing_poll, "the failed login reported")
        assert answer.status_code == 503
        poll = next(f for f in answer.json()["failing"] if f["job"] == "poll")
        assert poll["crm"] == "salesforce" and "connection refused" in poll["cause"]

        emulator.insert("Lead", {"FirstName": "Ada", "LastName": "Lovelace", "Company": "Engines",
                                 "Country": "United States"})
        emulator.start(tls.server_context, port=port)
        wait_for(lambda: http.get(f"{url}/readyz", timeout=5).status_code == 200, "Salesforce polled", 90)
        report = status(env, tmp_path)
        assert "salesforce: ok; last good poll 20" in report and "clocks: 1 running" in report, report
        assert process.poll() is None  # the same process all along
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        emulator.stop()
    text = out.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    assert "salesforce poll recovered" in text, text
