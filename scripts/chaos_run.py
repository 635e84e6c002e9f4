"""Chaos run: several `sidecar run` processes on one PostgreSQL against faulty emulators for a
simulated week, SIGKILLed and restarted every few seconds, PostgreSQL restarted once; then the
audit and the emulators' state are checked (see chaos_checks.py) and the figures printed and
written as JSON.

    python scripts/chaos_run.py --instances 3 --kills 50 --days 7

Time: all processes share an accelerated clock (SIDECAR_CLOCK, a test/benchmark setting that
`sidecar run` refuses without SIDECAR_ALLOW_VIRTUAL_CLOCK=1; see sidecar/bench_clock.py), so the
simulated period takes `--wall-seconds`. The scheduler fires on wall seconds (intervals below),
each covering `speed` virtual seconds. The outbox lease is set to LEASE_WALL_S of wall time so that
a live dispatcher's claim is never taken over while its call is in progress, as in production
(5 minutes against calls of seconds).

PostgreSQL: without --database-url, a private cluster is started on --pg-port (as the postgres user;
it refuses root) and restarted once mid-run; with --database-url, a fresh database is created on
that server for the run and dropped afterwards, and PostgreSQL is not restarted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, func, make_url, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_checks import verify  # noqa: E402

from connectors.emulators.demo_org import DemoOrg  # noqa: E402
from connectors.emulators.hubspot import DEFAULT_TOKEN  # noqa: E402
from sidecar.store.models import OutboxRow  # noqa: E402

INTERVALS = {"POLL": 2, "WEBHOOK_DRAIN": 2, "EVALUATE": 1, "DISPATCH": 1, "DIRECTORY_SYNC": 60}  # wall seconds
LEASE_WALL_S = 20.0
PGBIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Postgres:
    """A private cluster (restartable) or a fresh database on a given server (not restarted)."""

    def __init__(self, url: str | None, port: int, workdir: Path) -> None:
        self.own = url is None
        if self.own:
            self.data = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
            shutil.chown(self.data, "postgres")
            self._pg("initdb", "-D", str(self.data / "data"), "-A", "trust", "-U", "postgres")
            self.port = port
            self.start()
            self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
            self.admin_url = None
        else:
            assert url is not None
            self.admin_url = url
            self.name = f"chaos_{os.getpid()}"
            with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = make_url(url).set(database=self.name).render_as_string(hide_password=False)

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PGBIN / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        # The port may be in the kernel's ephemeral range, briefly taken by some outgoing connection.
        for attempt in range(10):
            try:
                self._pg("pg_ctl", "-D", str(self.data / "data"), "-l", str(self.data / "log"), "-w", "-o",
                         f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
                return
            except subprocess.CalledProcessError:
                if attempt == 9:
                    raise
                time.sleep(2)

    def restart(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data / "data"), "-m", "immediate", "-w", "stop")
        self.start()

    def close(self) -> None:
        if self.own:
            self._pg("pg_ctl", "-D", str(self.data / "data"), "-m", "fast", "-w", "stop")
            shutil.rmtree(self.data, ignore_errors=True)
        else:
            assert self.admin_url is not None
            with create_engine(self.admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


class Instance:
    def __init__(self, index: int, env: dict[str, str], workdir: Path) -> None:
        self.index, self.workdir = index, workdir / f"sidecar-{index}"
        self.workdir.mkdir()
        self.env = {**env, "SIDECAR_WEB_PORT": str(free_port())}
        self.process: subprocess.Popen[bytes] | None = None
        self.exits: Counter[int] = Counter()  # exit codes of deaths we did not cause

    def start(self) -> None:
        log = (self.workdir / "log").open("ab")
        command = [sys.executable, "-c", "import sys; from sidecar.cli import app; sys.argv[0] = 'sidecar'; app()",
                   "run"]
        self.process = subprocess.Popen(command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-run-"))
    speed = args.days * 86400 / args.wall_seconds
    anchor = time.time()
    setting = f"virtual:{anchor - args.days * 86400:.3f}:{anchor:.3f}:{speed:g}"
    pg = Postgres(args.database_url, args.pg_port, workdir)
    http = requests.Session()
    http.trust_env = False
    ports = {name: free_port() for name in ("hubspot", "slack", "control")}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    base_env |= {"PYTHONPATH": str(ROOT), "SIDECAR_DATABASE_URL": pg.url, "SIDECAR_CLOCK": setting,
                 "SIDECAR_ALLOW_VIRTUAL_CLOCK": "1", "PYTHONFAULTHANDLER": "1"}
    emulators = subprocess.Popen(
        [sys.executable, "-m", "connectors.emulators.chaos_org", "--seed", str(args.seed), "--days", str(args.days),
         "--fault-rate", str(args.fault_rate), *(f"--{name}-port={port}" for name, port in ports.items())],
        cwd=ROOT, env=base_env, stdout=subprocess.PIPE, stderr=(workdir / "emulators.log").open("wb"))
    instances: list[Instance] = []
    figures: dict[str, Any] = {}
    try:
        assert emulators.stdout is not None
        if emulators.stdout.readline().strip() != b"ready":
            raise SystemExit(f"emulators did not start; see {workdir / 'emulators.log'}")
        control = f"http://127.0.0.1:{ports['control']}"
        env = base_env | {
            "SIDECAR_HUBSPOT_ACCESS_TOKEN": DEFAULT_TOKEN, "SIDECAR_HUBSPOT_API_BASE": f"http://127.0.0.1:{ports['hubspot']}",
            "SIDECAR_HUBSPOT_PORTAL_ID": "24681357", "SIDECAR_SLACK_BOT_TOKEN": DemoOrg.SLACK_TOKEN,
            "SIDECAR_SLACK_API_BASE": f"http://127.0.0.1:{ports['slack']}/api/",
            "SIDECAR_SLACK_FALLBACK_CHANNEL": DemoOrg.FALLBACK_CHANNEL,
            "SIDECAR_LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
            "SIDECAR_OUTBOX_LEASE_SECONDS": str(int(LEASE_WALL_S * speed)),
            "SIDECAR_BACKOFF_CAP_SECONDS": str(int(10 * speed)),
            **{f"SIDECAR_{name}_INTERVAL_SECONDS": str(int(seconds)) for name, seconds in INTERVALS.items()}}
        instances = [Instance(i, env, workdir) for i in range(args.instances)]
        for instance in instances:
            instance.start()
        kills, unexpected, pg_restarts = 0, 0, 0
        kill_every = args.wall_seconds * 0.9 / max(args.kills, 1)
        next_kill = time.monotonic() + kill_every * rng.uniform(0.5, 1.5)
        pg_restart_at = started + args.wall_seconds * 0.5 if pg.own and not args.no_pg_restart else None
        deadline = started + args.wall_seconds * 2 + 120
        while time.monotonic() < deadline:
            for instance in instances:
                if not instance.alive():
                    assert instance.process is not None
                    unexpected += 1
                    instance.exits[instance.process.returncode] += 1
                    instance.start()
            now = time.monotonic()
            if kills < args.kills and now >= next_kill:
                victim = rng.choice(instances)
                victim.kill()
                kills += 1
                time.sleep(rng.uniform(0.0, 0.5))
                victim.start()
                next_kill = now + kill_every * rng.uniform(0.5, 1.5)
            if pg_restart_at is not None and now >= pg_restart_at:
                pg.restart()
                pg_restarts, pg_restart_at = 1, None
            if kills >= args.kills and pg_restart_at is None and http.get(f"{control}/state").json()["done"]:
                break
            time.sleep(0.1)
        # The quiet tail: faults off, every instance up, until nothing is due (or the budget ends).
        http.post(f"{control}/faults/off")
        tail_started = time.monotonic()
        _settle(pg.url, instances, tail_started + LEASE_WALL_S + 2, tail_started + args.tail_seconds)
        # Steps keep firing while the instances stop: effects decided after this point had no
        # dispatch yet and are reported apart, not as left behind.
        quiet_at = datetime.fromisoformat(http.get(f"{control}/state").json()["now"])
        for instance in instances:
            instance.stop()
        state = http.get(f"{control}/state").json()
        (workdir / "state.json").write_text(json.dumps(state))
        virtual_now = datetime.fromisoformat(state["now"])
        engine = create_engine(pg.url)
        checks = verify(engine, state, virtual_now, grace=timedelta(seconds=speed * 4), quiet_at=quiet_at)
        engine.dispose()
        faults: Counter[str] = Counter()
        for per_service in state["faults"].values():
            faults.update(per_service)
        figures = {
            "machine": f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().machine}",
            "instances": args.instances, "days": args.days, "seed": args.seed, "speed": round(speed, 1),
            "kills": kills, "unexpected_exits": unexpected, "postgres_restarts": pg_restarts,
            "faults_injected": dict(faults), "faults_by_service": state["faults"],
            "leads": checks["leads"], "human_owner_changes": len(state["human_changes"]),
            "steps_checked": checks["steps"]["checked"],
            "effects_checked": sum(checks["crm"][k]["checked"] for k in ("tasks", "notes"))
            + checks["owner_changes"]["checked"] + checks["slack"]["checked"],
            "lost_steps": checks["steps"]["lost"] + checks["steps"]["duplicates"] * 0,
            "duplicate_steps": checks["steps"]["duplicates"],
            "duplicate_crm_writes": sum(checks["crm"][k]["duplicates"] for k in ("tasks", "notes"))
            + checks["owner_changes"]["duplicates"],
            "lost_crm_writes": sum(checks["crm"][k]["lost"] for k in ("tasks", "notes"))
            + checks["owner_changes"]["lost"],
            "clobbered_human_owner_changes": checks["owner_changes"]["clobbered_human_changes"],
            "slack_duplicates": checks["slack"]["duplicates"], "slack_lost": checks["slack"]["lost"],
            "outbox_left": checks["outbox"]["left_pending"] + checks["outbox"]["left_in_flight"],
            "outbox_decided_after_quiet": checks["outbox"]["decided_after_quiet"],
            "dead_letters": checks["outbox"]["dead"], "dead_without_reason": checks["outbox"]["dead_without_reason"],
            "wall_seconds": round(time.monotonic() - started, 1), "details": checks}
        figures["ok"] = (figures["lost_steps"] == 0 and figures["duplicate_steps"] == 0
                         and figures["duplicate_crm_writes"] == 0 and figures["lost_crm_writes"] == 0
                         and figures["clobbered_human_owner_changes"] == 0 and figures["slack_lost"] == 0
                         and figures["slack_duplicates"] <= kills and figures["outbox_left"] == 0
                         and figures["dead_without_reason"] == 0 and kills >= args.kills)
        return figures
    finally:
        for instance in instances:
            instance.stop()
        emulators.terminate()
        emulators.wait(timeout=30)
        pg.close()
        if figures.get("ok") and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)


def _settle(url: str, instances: list[Instance], earliest: float, latest: float) -> None:
    """Wait until no effect is pending or in flight, checked three times in a row."""
    engine = create_engine(url)
    quiet = 0
    while time.monotonic() < latest:
        for instance in instances:
            if not instance.alive():
                instance.start()
        try:
            with engine.connect() as conn:
                left = conn.execute(select(func.count()).select_from(OutboxRow)
                                    .where(OutboxRow.status.in_(("pending", "in_flight")))).scalar_one()
        except Exception:
            left = -1
        quiet = quiet + 1 if left == 0 else 0
        if quiet >= 3 and time.monotonic() >= earliest:
            break
        time.sleep(1)
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", type=Path, default=ROOT / "scripts" / "results" / "chaos_run.json")
    parser.add_argument("--wall-seconds", type=float, default=300.0, help="wall time the simulated period takes")
    parser.add_argument("--tail-seconds", type=float, default=120.0, help="most wall time for the quiet tail")
    parser.add_argument("--fault-rate", type=float, default=0.05,
                        help="share of requests per fault kind (5xx, 429, dropped, timeout at half, slow; expired "
                             "session at 3x on searches): at 0.05 about a fifth of the calls fail, ~500 faults a week")
    parser.add_argument("--database-url", help="use this PostgreSQL server (a fresh database; no restart)")
    parser.add_argument("--pg-port", type=int, default=55490, help="port of the private cluster")
    parser.add_argument("--no-pg-restart", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) after a pass")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))  # stop the processes we started
    figures = run(args)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    for key, value in figures.items():
        if key != "details":
            print(f"{key}: {value}")
    print(f"written: {args.json_out}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
