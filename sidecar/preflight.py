"""`sidecar check`: everything between a fresh install and a running sidecar, as a list of steps.

Each step looks at one thing (a config file, the database, one CRM, Slack, the webhook URLs) and
returns findings; `run_steps` runs them in order and never lets one step's failure hide another's.
Later checks are added by appending a `Step` to `STEPS`. Steps that need the network or the
database are `online`; `sidecar check --offline` runs the others (config files only).

The core does not import connectors: what reaches a CRM or Slack comes in through `Reach`, which
the command line builds from `sidecar.wiring`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from sqlalchemy import text

from sidecar.cli_errors import explain
from sidecar.config_yaml import ConfigError, Lines, Problem, read_yaml
from sidecar.directory import DirectoryError, directory_problems, read_directory
from sidecar.policy import Policy, PolicyError, load_policy
from sidecar.policy.enforcement import ignored_policy_keys
from sidecar.policy.rules import rule_lines
from sidecar.policy.version import version_of
from sidecar.settings import ENV_FILE, Settings, env_file_warning
from sidecar.store.db import make_engine


class Level(Enum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"  # `sidecar run` would refuse to start or misbehave: check exits 1


@dataclass(frozen=True)
class Finding:
    level: Level
    where: str  # a file, or a system: salesforce, hubspot, slack, database, webhooks
    text: str
    line: int | None = None  # in `where`, for config files

    def __str__(self) -> str:
        place = f"{self.where}:{self.line}" if self.line else self.where
        return f"{place}: {self.text}"


class Reach(Protocol):
    """What the check needs from the composition root (sidecar.wiring)."""

    def configured_systems(self, settings: Settings) -> list[str]: ...
    def check_system(self, settings: Settings, system: str) -> list[tuple[bool, str]]: ...
    def config_file_problems(self, name: str, path: Path) -> list[str]: ...
    def webhook_endpoints(self) -> list[tuple[str, str]]: ...


@dataclass
class CheckContext:
    settings: Settings
    policy_file: Path
    reach: Reach
    offline: bool = False  # skip the online steps: no CRM, Slack or database is asked anything
    config_dir: Path = Path("config")
    policy: Policy | None = None  # set by the policy step for the steps that cross-check it
    env_file: Path = ENV_FILE


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[CheckContext], list[Finding]]
    online: bool = False


def _problem(p: Problem) -> Finding:
    return Finding(Level.PROBLEM, p.file, f"{p.key}: {p.message}" + (f" (fix: {p.fix})" if p.fix else ""), p.line)


def check_policy(ctx: CheckContext) -> list[Finding]:
    try:
        ctx.policy = load_policy(ctx.policy_file)
    except PolicyError as exc:
        return [_problem(p) for p in exc.problems]
    found = [Finding(Level.OK, str(ctx.policy_file), f"policy OK: version {version_of(ctx.policy)} "
                     f"{ctx.policy.label!r}, {len(rule_lines(ctx.policy))} rules")]
    # A key the engine does not act on yet would look like a promise the sidecar keeps: say so.
    return found + [Finding(Level.WARNING, str(ctx.policy_file), f"{key}: set, but the engine does not act on it "
                                                                 "yet (it has no effect)")
                    for key in ignored_policy_keys(ctx.policy)]


def check_directory(ctx: CheckContext) -> list[Finding]:
    path = ctx.settings.directory_file
    if not path.exists():
        return [Finding(Level.WARNING, str(path), "not found: no teams, so no lead can be reassigned or assigned "
                        "(copy config/directory.example.yaml, then `sidecar directory apply`)")]
    try:
        directory, lines = read_directory(path)
        problems = directory_problems(directory, ctx.policy) if ctx.policy is not None else []
        if problems:
            raise DirectoryError(problems, str(path)).located(lines)
    except DirectoryError as exc:
        return [Finding(Level.PROBLEM, str(path), f"{p.key}: {p.message}" + (f" (fix: {p.fix})" if p.fix else ""),
                        p.line) for p in exc.problems]
    checked = "" if ctx.policy is not None else " (not compared with the policy, which has problems)"
    return [Finding(Level.OK, str(path), f"directory OK: {len(directory.teams)} teams, "
                    f"{len(directory.reps)} reps{checked}")]


_KEY_AT_START = re.compile(r"^([A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*):")
_QUOTED_KEY = re.compile(r"^template(?: key)? '([^']+)'")


def _connector_file(name: str, example: str) -> Step:
    """A config file a connector reads: strict YAML first (syntax, duplicate keys), then the connector's own checks."""

    def run(ctx: CheckContext) -> list[Finding]:
        path = ctx.config_dir / f"{name}.yaml"
        if not path.exists():
            return [Finding(Level.OK, str(path), f"not present: the built-in defaults apply (see {example})")]
        try:
            raw, lines = read_yaml(path, example)
        except ConfigError as exc:
            return [_problem(p) for p in exc.problems]
        if raw is not None and not isinstance(raw, dict):
            return [Finding(Level.PROBLEM, str(path), f"must be a mapping of keys (see {example})", 1)]
        wrong = [key for key, value in (raw or {}).items() if not isinstance(value, str)]
        if name == "slack.templates" and wrong:
            bad = wrong[0]
            return [Finding(Level.PROBLEM, str(path), f"{bad}: a template must be a quoted string",
                            lines.line((str(bad),)))]
        try:
            messages = ctx.reach.config_file_problems(name, path)
        except (TypeError, AttributeError, KeyError) as exc:  # a list where the parser wants a mapping, ...
            return [Finding(Level.PROBLEM, str(path), f"a section has the wrong shape ({exc}); compare it with "
                            f"{example}")]
        if not messages:
            return [Finding(Level.OK, str(path), "OK")]
        return [Finding(Level.PROBLEM, str(path), message, _line_of(message, lines)) for message in messages]

    return Step(name, run)


def _line_of(message: str, lines: Lines) -> int | None:
    """The line of the key a connector's message starts with ("lead.market: ..." / "template 'x' ...")."""
    match = _KEY_AT_START.match(message) or _QUOTED_KEY.match(message)
    if match is None:
        return None
    key = match.group(1)
    if (key,) in lines.by_path:  # a dotted key of its own, like a Slack template's "sla.breach.header"
        return lines.by_path[(key,)]
    top = re.split(r"[.\[]", key, maxsplit=1)[0]
    return lines.line_of_key(key) if (top,) in lines.by_path else None  # a key the file does not hold: no line


def check_database(ctx: CheckContext) -> list[Finding]:
    engine = make_engine(ctx.settings.database_url)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is this step's one line; the other steps still run
        return [Finding(Level.PROBLEM, "database", f"{shown}: {explain(exc)}")]
    finally:
        engine.dispose()
    return [Finding(Level.OK, "database", f"{shown} reachable (`sidecar init` creates or migrates the tables)")]


def check_systems(ctx: CheckContext) -> list[Finding]:
    """Credentials, scopes, fields and reachability of each configured CRM and Slack: one line per
    system when it cannot be reached or its credentials are refused."""
    systems = ctx.reach.configured_systems(ctx.settings)
    out: list[Finding] = []
    if not any(system in ("salesforce", "hubspot") for system in systems):
        out.append(Finding(Level.PROBLEM, "crm", "no CRM configured: `sidecar run` will not start; set "
                           "SIDECAR_SF_USERNAME/SIDECAR_SF_PASSWORD/SIDECAR_SF_SECURITY_TOKEN (Salesforce) or "
                           "SIDECAR_HUBSPOT_ACCESS_TOKEN (HubSpot) in .env (see .env.example)"))
    if "slack" not in systems:  # a team on Teams is told there (the "teams" system below)
        out.append(Finding(Level.WARNING, "slack", "not configured: owners and managers of teams on Slack get no "
                           "messages (set SIDECAR_SLACK_BOT_TOKEN and SIDECAR_SLACK_SIGNING_SECRET in .env)"))
    for system in systems:
        try:
            results = ctx.reach.check_system(ctx.settings, system)
        except Exception as exc:  # unreachable API, refused TLS...: this system's one line
            out.append(Finding(Level.PROBLEM, system, explain(exc, f"the {system} API")))
            continue
        out += [Finding(Level.OK if ok else Level.PROBLEM, system, message) for ok, message in results]
    return out


def check_webhooks(ctx: CheckContext) -> list[Finding]:
    """The URLs an admin enters in Salesforce, HubSpot and Slack, built from SIDECAR_PUBLIC_URL."""
    base = (ctx.settings.public_url or "").rstrip("/")
    if not base:
        return [Finding(Level.WARNING, "webhooks", "SIDECAR_PUBLIC_URL is not set: set it to the https address "
                        "Salesforce, HubSpot and Slack reach this sidecar at, then run `sidecar check` for the "
                        "URLs to enter (until then changes arrive by polling only, and buttons do not work)")]
    return [Finding(Level.OK, "webhooks", f"{label}: {base}{path}") for label, path in ctx.reach.webhook_endpoints()]


def check_env_file(ctx: CheckContext) -> list[Finding]:
    """The secrets file must not be world-readable (a warning: `sidecar run` still starts)."""
    warning = env_file_warning(ctx.env_file)
    return [Finding(Level.WARNING, str(ctx.env_file), warning)] if warning else []


STEPS: list[Step] = [
    Step("policy", check_policy),
    Step("directory", check_directory),
    _connector_file("salesforce.fields", "config/salesforce.fields.example.yaml"),
    _connector_file("hubspot.fields", "config/hubspot.fields.example.yaml"),
    _connector_file("slack.templates", "config/slack.templates.example.yaml"),
    Step("secrets file", check_env_file),
    Step("database", check_database, online=True),
    Step("crm and slack", check_systems, online=True),
    Step("webhooks", check_webhooks, online=True),
]


def run_steps(ctx: CheckContext, steps: list[Step] | None = None) -> list[Finding]:
    """Every finding of every step that applies (no online step when `ctx.offline`)."""
    findings: list[Finding] = []
    for step in steps if steps is not None else STEPS:
        if step.online and ctx.offline:
            continue
        try:
            findings += step.run(ctx)
        except Exception as exc:  # e.g. a connector's parser choking on an odd shape: this step's one line
            findings.append(Finding(Level.PROBLEM, step.name, f"could not be checked: {explain(exc)}"))
    return findings
