"""Runtime settings from the environment and `.env`. Secrets are SecretStr: never printed."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIDECAR_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///sidecar.db"
    policy_file: Path = Path("config/policy.yaml")
    directory_file: Path = Path("config/directory.yaml")
    log_level: str = "INFO"
    log_format: Literal["human", "json"] = "human"  # json: one JSON object per line, for log shippers
    web_port: int = 8080  # webhook receivers (Salesforce Outbound Messages, HubSpot, Slack buttons)
    # Loopback by default, so nothing is exposed by accident; 0.0.0.0 in a container (the Dockerfile sets it).
    web_host: str = "127.0.0.1"
    # The URL the outside world (HubSpot, Salesforce, Slack) calls, e.g. https://sidecar.example.com, when
    # a reverse proxy or load balancer sits in front: HubSpot signs the URL it called, not ours.
    public_url: str | None = None
    # Largest request body any route accepts (413 above it, before reading or checking anything);
    # HubSpot batches (<= 100 events) and Salesforce Outbound Messages (<= 100 notifications) fit easily.
    max_body_bytes: int = 5 * 1024 * 1024
    # Web server processes for the receivers, dashboard and APIs. 1: a thread of `sidecar run` itself.
    # More: that many processes beside it sharing the port, so parsing and storing webhooks is not
    # slowed by the jobs (one Python process runs one thread at a time). PostgreSQL only: on SQLite
    # every write takes one lock, which other processes can only wait for by polling it.
    web_workers: int = 1

    # Job intervals of `sidecar run`, in seconds; a failing CRM is retried with a doubling backoff
    # starting at its job's interval, up to `backoff_cap_seconds`.
    poll_interval_seconds: int = 60
    webhook_drain_interval_seconds: int = 5
    evaluate_interval_seconds: int = 15
    dispatch_interval_seconds: int = 5
    directory_sync_interval_seconds: int = 900
    backoff_cap_seconds: int = 600
    # How long a dispatcher's claim on an effect holds before another instance may take it over; far
    # above any single CRM/Slack call's timeout. Measured on the jobs' clock (see sidecar.bench_clock).
    outbox_lease_seconds: int = 300

    # Salesforce: username+password+token, or connected-app client credentials, or a session.
    sf_instance_url: str | None = None
    sf_domain: str = "login"  # "test" for sandboxes
    sf_username: str | None = None
    sf_password: SecretStr | None = None
    sf_security_token: SecretStr | None = None
    sf_client_id: str | None = None
    sf_client_secret: SecretStr | None = None
    sf_session_id: SecretStr | None = None
    sf_organization_id: str | None = None  # Outbound Messages from any other org are refused

    # HubSpot: private-app token (or OAuth access token); the app secret signs webhooks v3.
    hubspot_access_token: SecretStr | None = None
    hubspot_app_secret: SecretStr | None = None
    hubspot_portal_id: str | None = None
    hubspot_api_base: str | None = None  # default https://api.hubapi.com; a proxy or test server otherwise

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_fallback_channel: str | None = None
    slack_api_base: str | None = None  # default https://slack.com/api/; a proxy or test server otherwise

    # Microsoft Teams (a team on Teams in the directory): the URL of the Workflows webhook that posts
    # in a chat with the person the payload names. Team channels' URLs sit in the env vars the
    # directory names (teams_workflow_env). All carry a signature (sig=...): secrets.
    teams_chat_workflow_url: SecretStr | None = None

    # Admin API bearer token
    admin_token: SecretStr | None = None
    # Dashboard and /api users: "name:role:token,..." with role viewer, manager or admin (sidecar.web.auth).
    dashboard_users: SecretStr | None = None
    # Signs dashboard session cookies; unset = a random key per process (everyone logs in again on restart).
    dashboard_secret: SecretStr | None = None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"SIDECAR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
        return value.upper()

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SIDECAR_PUBLIC_URL must be an absolute http(s) URL such as "
                             f"https://sidecar.example.com, not {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("SIDECAR_PUBLIC_URL must not have a query or fragment: give the base URL only")
        return value.rstrip("/")

    @field_validator("sf_organization_id")
    @classmethod
    def _org_id_shape(cls, value: str | None) -> str | None:
        # The receiver compares all 18 characters (a 15-character id gets its checksum suffix there).
        if value and not re.fullmatch(r"00D[0-9A-Za-z]{12}(?:[0-9A-Z]{3})?", value.strip(), re.ASCII):
            raise ValueError("SIDECAR_SF_ORGANIZATION_ID must be the 15- or 18-character organization id "
                             "starting 00D (Setup > Company Information)")
        return value.strip() if value else None

    @field_validator("max_body_bytes")
    @classmethod
    def _at_least_a_kilobyte(cls, value: int) -> int:
        if value < 1024:
            raise ValueError("SIDECAR_MAX_BODY_BYTES must be at least 1024 (the default is 5242880, 5 MB)")
        return value

    @field_validator("web_workers")
    @classmethod
    def _worker_count(cls, value: int) -> int:
        if not 1 <= value <= 64:
            raise ValueError("SIDECAR_WEB_WORKERS must be between 1 and 64 (about one per core is plenty)")
        return value

    @field_validator("poll_interval_seconds", "webhook_drain_interval_seconds", "evaluate_interval_seconds",
                     "dispatch_interval_seconds", "directory_sync_interval_seconds", "backoff_cap_seconds",
                     "outbox_lease_seconds")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1 second")
        return value

    def job_intervals(self) -> dict[str, int]:
        """Scheduler job name -> interval in seconds."""
        return {"poll": self.poll_interval_seconds, "drain_webhooks": self.webhook_drain_interval_seconds,
                "evaluate": self.evaluate_interval_seconds, "dispatch": self.dispatch_interval_seconds,
                "directory_sync": self.directory_sync_interval_seconds}

    def public_endpoint(self, path: str, listen_url: str) -> str:
        """The URL a CRM must call for `path` (e.g. /webhooks/salesforce): the public URL when one is
        set, else where the web server listens (`listen_url`)."""
        return (self.public_url or listen_url.rstrip("/")) + path
    # POST /api/signals (churn-risk signals) bearer token; without it the admin token is accepted there
    signals_token: SecretStr | None = None


ENV_FILE = Path(".env")


def env_file_warning(path: Path = ENV_FILE) -> str | None:
    """One line when the secrets file can be read by users other than its owner (and its group), else None.

    Tokens live in `.env`; a file any local user can read hands them to every account on the host."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # no file (settings from the environment only) or not ours to look at
    if not mode & stat.S_IROTH:
        return None
    return (f"{path} is readable by every user on this host (mode {stat.S_IMODE(mode):03o}) and holds the "
            f"CRM and Slack tokens: run `chmod 600 {path}`")
