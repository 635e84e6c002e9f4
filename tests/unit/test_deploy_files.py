"""The deployment files, parsed and checked where no docker engine runs (CI builds the image when
one does): the Dockerfile (dockerfile-parse), compose.yaml (PyYAML), the systemd unit and .env.example
agree with each other and with the settings the sidecar actually reads."""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from sidecar.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {f"SIDECAR_{name.upper()}" for name in Settings.model_fields}


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def instructions(parsed: DockerfileParser, name: str) -> list[str]:
    return [str(i["value"]) for i in parsed.structure if i["instruction"] == name]


def test_the_image_is_small_and_runs_as_a_non_root_user(dockerfile: DockerfileParser) -> None:
    assert dockerfile.baseimage == "python:3.11-slim"
    users = instructions(dockerfile, "USER")
    assert users and users[-1] not in ("root", "0"), "the last USER must not be root"
    assert "useradd" in " ".join(instructions(dockerfile, "RUN"))
    assert json.loads(instructions(dockerfile, "CMD")[-1]) == ["sidecar", "run"]


def test_healthcheck_hits_healthz_on_the_exposed_port_and_env_names_are_settings(
        dockerfile: DockerfileParser) -> None:
    env = dockerfile.envs
    assert env["SIDECAR_WEB_HOST"] == "0.0.0.0"
    assert instructions(dockerfile, "EXPOSE") == [env["SIDECAR_WEB_PORT"]]
    [check] = instructions(dockerfile, "HEALTHCHECK")
    assert "/healthz" in check and "SIDECAR_WEB_PORT" in check and "--interval=" in check
    sidecar_env = {name for name in env if name.startswith("SIDECAR_")}
    assert sidecar_env <= SETTINGS, sidecar_env - SETTINGS
    assert Settings(_env_file=None, **{k.removeprefix("SIDECAR_").lower(): v for k, v in env.items()
                                       if k in sidecar_env}).web_host == "0.0.0.0"


def test_the_image_leaves_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "*.db", ".git/", "config/policy.yaml"} <= set(ignored)


def test_compose_runs_the_sidecar_on_postgres_against_the_emulators_with_healthchecks(
        compose: dict[str, Any], dockerfile: DockerfileParser) -> None:
    services = compose["services"]
    assert set(services) == {"db", "sidecar"}
    db, sidecar = services["db"], services["sidecar"]
    assert db["image"].startswith("postgres:") and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert sidecar["depends_on"]["db"]["condition"] == "service_healthy"
    assert sidecar["build"] == "."
    env = sidecar["environment"]
    assert set(env) <= SETTINGS, set(env) - SETTINGS
    assert re.match(r"postgresql\+psycopg://sidecar:.+@db:5432/sidecar$", env["SIDECAR_DATABASE_URL"])
    port = env["SIDECAR_WEB_PORT"]
    assert port == dockerfile.envs["SIDECAR_WEB_PORT"]
    assert [p.rsplit(":", 1)[1] for p in sidecar["ports"]] == [port]
    assert f"127.0.0.1:{port}/healthz" in " ".join(sidecar["healthcheck"]["test"])
    command = sidecar["command"]
    assert command[:2] == ["python", "-m"] and importlib.util.find_spec(command[2]) is not None
    assert "pgdata" in compose["volumes"]


def test_the_systemd_unit_runs_sidecar_run_as_its_own_user_and_restarts_on_failure() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(ROOT / "deploy" / "sidecar.service")
    service = unit["Service"]
    assert service["ExecStart"].endswith("/sidecar run") and service["User"] not in ("root", "0")
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"].endswith(".env")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    names = set(re.findall(r"^#?\s*(SIDECAR_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert names == SETTINGS, {"undocumented": SETTINGS - names, "unknown": names - SETTINGS}
