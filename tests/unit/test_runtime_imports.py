"""`sidecar run` loads only what production needs: never the emulators, nor trustme (the demo's TLS).

Each case runs in a fresh interpreter, since this test process has imported the emulators already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Builds everything `sidecar run` builds (sidecar.service.run minus starting the server and the
# scheduler), with settings that look like a real org's: every connector and receiver is configured.
BUILD_LIKE_RUN = """
import sys
from datetime import UTC, datetime, timedelta
from pydantic import SecretStr
from sidecar import cli, logs, scheduler, service, wiring
from sidecar.settings import Settings
from sidecar.store.db import make_engine, migrate, session_factory
from sidecar.web.app import create_app

settings = Settings(
    _env_file=None, database_url="sqlite:///" + sys.argv[1],
    sf_session_id=SecretStr("00D5g000004ABCD!AQ4AQFakeSession"), sf_instance_url="https://acme.my.salesforce.com",
    sf_organization_id="00D5g000004ABCDEAA",
    hubspot_access_token=SecretStr("pat-na1-11111111-2222-3333-4444-555555555555"),
    hubspot_app_secret=SecretStr("hubspot-app-secret"), hubspot_portal_id="1234567",
    slack_bot_token=SecretStr("xoxb-1-2-fake"), slack_signing_secret=SecretStr("slack-secret"),
    admin_token=SecretStr("admin-token"))
logs.configure(settings.log_level, settings.log_format)
engine = make_engine(settings.database_url)
migrate(engine)
store = session_factory(engine)
runtime = wiring.build_runtime(settings, store)
app = create_app(store, wiring.web_routers(settings, store, runtime.ctx), runtime.failures)
scheduler.build(runtime, lambda: datetime.now(UTC), settings.job_intervals(),
                timedelta(seconds=settings.backoff_cap_seconds))
assert sorted(runtime.readers) == ["hubspot", "salesforce"] and runtime.ports.notifier is not None
loaded = sorted(m for m in sys.modules if m.startswith("connectors.emulators") or m.split(".")[0] == "trustme")
print("LOADED", loaded)
"""


def test_building_the_runtime_like_sidecar_run_imports_no_emulator_and_no_trustme(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", BUILD_LIKE_RUN, str(tmp_path / "run.db")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout
    # The check can fail: the demo path does load them.
    demo = subprocess.run([sys.executable, "-c", "import sys, connectors.emulators.demo; "
                           "print('trustme' in sys.modules)"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert demo.stdout.strip() == "True", demo.stderr


def test_without_the_demo_extra_the_demo_says_how_to_install_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['trustme'] = None\n"  # as if `pip install` without the extra
            "from datetime import timedelta; from pathlib import Path\n"
            "from sidecar import wiring_demo\n"
            "try:\n"
            "    wiring_demo.run_demo(crm='hubspot', seed=1, scenario=None, policy=None, speed=None,\n"
            "                    duration=timedelta(hours=1), out=Path(sys.argv[1]), port=0)\n"
            "except wiring_demo.DemoUnavailable as exc:\n"
            "    print('MESSAGE', exc)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert 'MESSAGE the demo needs the `demo` extra: pip install -e ".[demo]"' in result.stdout, result.stderr
