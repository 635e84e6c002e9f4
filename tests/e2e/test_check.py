"""`sidecar check` against the emulators: good credentials pass; a bad token or a missing property is
named with what to do; the policy alone is checked with --offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.emulators.slack import SlackEmulator
from sidecar.cli import app
from tests.conftest import EXAMPLE_POLICY

runner = CliRunner()


@pytest.fixture
def systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HubSpotEmulator, SlackEmulator]]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "policy.yaml").write_text(EXAMPLE_POLICY.read_text())
    hubspot, slack = HubSpotEmulator(), SlackEmulator()
    hubspot.start()
    slack.start()
    monkeypatch.setenv("SIDECAR_HUBSPOT_ACCESS_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("SIDECAR_HUBSPOT_API_BASE", hubspot.url)
    monkeypatch.setenv("SIDECAR_SLACK_BOT_TOKEN", "xoxb-emulator")
    monkeypatch.setenv("SIDECAR_SLACK_API_BASE", f"{slack.url}/api/")
    for name in ("SIDECAR_SF_USERNAME", "SIDECAR_SF_CLIENT_ID", "SIDECAR_SF_SESSION_ID"):
        monkeypatch.delenv(name, raising=False)
    yield hubspot, slack
    hubspot.stop()
    slack.stop()


def test_check_passes_with_good_credentials(systems: tuple[HubSpotEmulator, SlackEmulator]) -> None:
    # The install step the README gives: the sidecar's key property on tasks and notes.
    assert runner.invoke(app, ["init", "--hubspot"]).exit_code == 0
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "hubspot: ok" in result.output and "slack: ok: bot" in result.output


def test_check_names_a_bad_token_and_a_missing_property(systems: tuple[HubSpotEmulator, SlackEmulator],
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIDECAR_SLACK_BOT_TOKEN", "xoxb-revoked")
    (tmp_path / "config" / "hubspot.fields.yaml").write_text("properties:\n  tier: account_tier\n")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "SIDECAR_SLACK_BOT_TOKEN refused: invalid_auth" in result.output
    assert "contacts.account_tier: no such property" in result.output
    offline = runner.invoke(app, ["check", "--offline"])
    assert offline.exit_code == 0 and "policy OK" in offline.output
