"""Where the Teams workflow URLs come from: the chat workflow's from Settings, each team channel's
from the env var the directory names (the environment first, then .env: Settings cannot declare
variables the directory invents). The URLs are secrets and stay in memory only."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from connectors.teams.notifier import CHAT_URL_ENV, Resolve
from sidecar.directory import DirectoryError, load_directory


def env_reader(chat_url: str | None, env_file: Path = Path(".env")) -> Resolve:
    from_file = dotenv_values(env_file) if env_file.exists() else {}

    def read(name: str) -> str | None:
        return chat_url if name == CHAT_URL_ENV else os.environ.get(name) or from_file.get(name)
    return read


def workflow_targets(directory_file: Path, read: Resolve) -> list[tuple[str, str, str | None]]:
    """(what it serves, env var name, value) of each workflow the directory and settings need."""
    try:
        teams = [team for team in load_directory(directory_file).teams if team.chat == "teams"] \
            if directory_file.exists() else []
    except DirectoryError:
        teams = []  # the directory step of `sidecar check` reports its problems
    targets: list[tuple[str, str, str | None]] = []
    if teams or read(CHAT_URL_ENV):
        targets.append(("chats with a person", CHAT_URL_ENV, read(CHAT_URL_ENV)))
    targets += [(f"team {team.id}'s channel", team.teams_workflow_env, read(team.teams_workflow_env))
                for team in teams if team.teams_workflow_env]
    return targets
