"""The command line explains itself: every command and argument has help, booleans are flags, dates
are YYYY-MM-DD everywhere, and `sidecar --version` answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from sidecar import __version__
from sidecar.cli import app
from sidecar.cli_common import parse_day, parse_since

runner = CliRunner()


def _commands(command: Any, path: str = "sidecar") -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def _params() -> Iterator[tuple[str, Any]]:
    for path, command in _commands(get_command(app)):
        for param in command.params:
            if param.name != "help":
                yield f"{path} {param.name}", param


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"sidecar {__version__}"


def test_every_command_and_every_argument_has_help() -> None:
    commands = list(_commands(get_command(app)))
    assert len(commands) > 15
    assert [path for path, command in commands if not (command.help or "").strip()] == []
    assert [name for name, param in _params() if not (getattr(param, "help", None) or "").strip()] == []


def test_booleans_are_flags_not_options_taking_a_value() -> None:
    booleans = [(name, param) for name, param in _params() if param.type_descriptor.annotation is bool]
    assert any(name == "sidecar check offline" for name, _param in booleans)
    assert [name for name, param in booleans if not param.is_flag] == []
    assert runner.invoke(app, ["check", "--offline", "true"]).exit_code == 2  # no value is taken


def test_every_date_is_documented_as_yyyy_mm_dd() -> None:
    dated = [(name, param) for name, param in _params() if "date" in str(param.type_descriptor.annotation)]
    assert len(dated) >= 4  # audit export --since, backfill --since, directory pto START and END
    assert [name for name, param in dated if "YYYY-MM-DD" not in param.help] == []
    assert [name for name, param in dated if param.param_type_name == "option" and param.metavar != "YYYY-MM-DD"] \
        == []
    assert [name for name, param in dated if param.type_descriptor.parameter_info.parser is None] == []
    pto = runner.invoke(app, ["directory", "pto", "--help"]).stdout
    assert "%Y" not in pto and "First day away, YYYY-MM-DD." in pto


def test_help_shows_flags_as_flags_and_command_summaries_whole() -> None:
    for args in (["--help"], ["check", "--help"], ["init", "--help"], ["directory", "--help"],
                 ["directory", "apply", "--help"], ["policy", "--help"]):
        shown = runner.invoke(app, args).stdout
        cut = [line for line in shown.splitlines() if line.endswith("...") and not line.startswith("Usage:")]
        assert "<bool>" not in shown and cut == [], (args, shown)
    assert "  --offline  " in runner.invoke(app, ["check", "--help"]).stdout


def test_day_and_since_parsing() -> None:
    assert parse_day("2026-12-01") == date(2026, 12, 1)
    for bad in ("2026-12-1", "2026-13-01", "01.12.2026", "2026-12-01T00:00"):
        with pytest.raises(typer.BadParameter):
            parse_day(bad)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T09:00:00+01:00") == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert parse_since("2026-11-01T09:00:00") == datetime(2026, 11, 1, 9, tzinfo=UTC)  # no offset: UTC
