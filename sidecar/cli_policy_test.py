"""`sidecar policy test FILES`: replay scenario files and check their `expect:` blocks (policy in CI).

Each file is replayed on virtual time against the emulated CRMs and Slack (the demo's machinery,
reached through `sidecar.wiring_demo` so the core never imports the emulators), then its expectations
are compared with the audit. Exit 0 when every expectation of every file holds, 1 otherwise, with
a per-lead diff of what was expected and what happened.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from sidecar.cli_common import PolicyOption, console, fail, load_or_exit
from sidecar.policy.expectations import check, parse_expectations, report_lines
from sidecar.policy.version import version_of
from sidecar.settings import Settings


def policy_test(
    files: Annotated[list[Path], typer.Argument(help="Scenario files with `expect:` blocks.")],
    policy: PolicyOption = None,
) -> None:
    """Replay scenario files and check their expectations.

    The policy is --policy, else the scenario's own `policy:`, else the configured policy file.
    Exit 1 with a per-lead diff (expected vs actual) when any expectation fails."""
    from sidecar import wiring_demo

    failed = 0
    for path in files:
        if not path.is_file():
            raise fail(f"{path}: no such scenario file (see config/scenarios/ for examples)")
        try:
            scenario = wiring_demo.load_scenario_file(path)
        except wiring_demo.DemoUnavailable as exc:
            raise fail(str(exc)) from exc
        except ValueError as exc:
            raise fail(f"{exc}".replace("\n  ", "; ")) from exc
        leads = {str(e.args["id"]) for e in scenario.events if e.action == "create_lead"}
        try:
            expectations = parse_expectations(list(scenario.expect) or None, scenario.start, leads)
        except ValueError as exc:
            raise fail(f"{path}: " + "; ".join(str(exc).splitlines()) + " (see `sidecar policy test --help`)") from exc
        if not expectations:
            raise fail(f"{path}: no `expect:` block; add one, e.g. - {{lead: L1, kind: sla_breach}}")
        policy_path = policy or scenario.policy or Settings().policy_file
        loaded = load_or_exit(policy_path)
        with tempfile.TemporaryDirectory(prefix="sidecar-policy-test-") as workdir:
            replay = wiring_demo.replay_scenario(scenario, policy_path, Path(workdir))
        outcome = check(expectations, replay.observed, scenario.start.tzinfo)
        under = f"policy {version_of(loaded)} {loaded.label!r} from {policy_path}"
        if outcome.passed:
            console.print(f"PASS {path}: {outcome.checked} expectations hold ({under})", markup=False,
                          highlight=False)
            continue
        failed += 1
        console.print(f"FAIL {path}: {len(outcome.misses)} of {outcome.checked} expectations not met ({under})",
                      markup=False, highlight=False)
        for line in report_lines(outcome, replay.observed, replay.names, scenario.start.tzinfo):
            console.print(line, markup=False, highlight=False)
    if failed:
        raise fail(f"{failed} of {len(files)} scenario file(s) failed")
