"""Runtime settings from the environment and `.env`. Secrets are SecretStr: never printed."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIDECAR_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///sidecar.db"
    policy_file: Path = Path("config/policy.yaml")
    directory_file: Path = Path("config/directory.yaml")
    log_level: str = "INFO"
    web_port: int = 8080  # webhook receivers (Salesforce Outbound Messages, HubSpot, Slack buttons)

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

    # Admin API bearer token
    admin_token: SecretStr | None = None
    # POST /api/signals (churn-risk signals) bearer token; without it the admin token is accepted there
    signals_token: SecretStr | None = None
