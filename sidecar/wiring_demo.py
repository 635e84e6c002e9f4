"""The demo and scenario replays: `sidecar demo` and `sidecar policy test` against the emulators.

Beside the composition root (sidecar.wiring) because it is the one other place of `sidecar` that
imports connectors: the emulators, which are never on `sidecar run`'s import path (they need the
`demo` extra), so each entry point imports them when called and says how to install them if missing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def parse_duration(text: str) -> timedelta:
    from connectors.emulators.scenario import parse_offset

    return parse_offset(text)


class DemoUnavailable(ValueError):
    """The demo's optional packages are not installed; the message says how to install them."""


def run_demo(*, crm: str, seed: int, scenario: Path | None, policy: Path | None, speed: float | None,
             duration: timedelta, out: Path, port: int,
             progress: Callable[[datetime, Any], None] | None = None,
             finished: Callable[[Any], None] | None = None) -> Any:
    """Run the demo; writes audit.jsonl, crm.json, slack.json, teams.json and requests.jsonl into `out`.
    `finished(summary)` runs while the dashboard and receivers are still up (`--serve` waits in it)."""
    try:  # the emulators (and trustme, for their TLS) are never on `sidecar run`'s import path
        from connectors.emulators.demo import Demo, DemoOptions
    except ModuleNotFoundError as exc:
        if exc.name != "trustme":
            raise
        raise DemoUnavailable("the demo needs the `demo` extra: pip install -e \".[demo]\" "
                              "(or \".[dev]\")") from exc
    from connectors.emulators.scenario import load_scenario

    loaded = load_scenario(scenario) if scenario else None
    if loaded is not None:
        crm = loaded.crm
        policy = policy or loaded.policy
    demo = Demo(DemoOptions(crm=crm, seed=seed, scenario=loaded, policy=policy, speed=speed, duration=duration,
                            port=port), out)
    try:
        summary = demo.run(progress)
        demo.write_outputs(out)
        if finished is not None:
            finished(summary)
        return summary
    finally:
        demo.close()



def _demo_modules() -> None:
    """Import the emulators, or say how to install them (they are never on `sidecar run`'s path)."""
    try:
        import connectors.emulators.demo  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "trustme":
            raise
        raise DemoUnavailable("scenario replays need the `demo` extra: pip install -e \".[demo]\" "
                              "(or \".[dev]\")") from exc


def load_scenario_file(path: Path) -> Any:
    """A scenario file (connectors.emulators.scenario.Scenario); ValueError lists every problem."""
    _demo_modules()
    from connectors.emulators.scenario import load_scenario

    return load_scenario(path)


def replay_scenario(scenario: Any, policy: Path, workdir: Path) -> Any:
    """`sidecar policy test`: run a loaded scenario on virtual time under `policy` against the
    emulators; returns connectors.emulators.replay.Replay (audit rows named by scenario keys)."""
    _demo_modules()
    from connectors.emulators.replay import replay

    return replay(scenario, policy, workdir)
