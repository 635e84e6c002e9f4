"""The command line explains itself: every command and argument has help, booleans are flags, dates
are YYYY-MM-DD everywhere, and `sidecar --version` answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from typer.main import get_command
from typer.testing import CliRunner

from sidecar import __version__
from sidecar.cli import app

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
    dated = [(name, param) for name, param in _params()
             if "datetime" in str(param.type_descriptor.annotation)]
    assert len(dated) >= 4  # audit export --since, backfill --since, directory pto START and END
    assert [name for name, param in dated if "YYYY-MM-DD" not in param.help] == []
    assert [name for name, param in dated if "%Y-%m-%d" not in param.type_descriptor.parameter_info.formats] == []
