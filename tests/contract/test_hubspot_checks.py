"""Contract tests: the plain functions behind `sidecar check` and `sidecar init --hubspot`
(`check_access`, `missing_properties`, `HubSpotWriter.ensure_properties`) against the emulator,
including private-app tokens that lack a scope."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.auth import check_access
from connectors.hubspot.fields import FieldMap, missing_properties
from connectors.hubspot.writer import KEY_PROPERTY, HubSpotWriter
from sidecar.ports import PermanentError
from tests.contract.harness import Clock, make_api

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

ALL_SCOPES = ("crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.owners.read",
              "crm.schemas.contacts.read", "crm.schemas.tasks.write", "crm.schemas.notes.write")


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def api_for(emulator: HubSpotEmulator, clock: Clock, *scopes: str, token: str = DEFAULT_TOKEN) -> HubSpotApi:
    if token != DEFAULT_TOKEN:
        emulator.add_token(token, scopes)
    return make_api(emulator, clock, token=token)


def without(scope: str) -> tuple[str, ...]:
    return tuple(s for s in ALL_SCOPES if s != scope)


def test_check_access_names_each_missing_read_scope(emulator: HubSpotEmulator, clock: Clock) -> None:
    assert check_access(api_for(emulator, clock, *ALL_SCOPES, token="pat-all")) == []

    (problem,) = check_access(api_for(emulator, clock, *without("crm.objects.owners.read"), token="pat-o"))
    assert problem.startswith("crm.objects.owners.read")
    assert "missing scope crm.objects.owners.read" in problem and "Private Apps" in problem

    problems = check_access(api_for(emulator, clock, "crm.schemas.contacts.read", token="pat-none"))
    assert [p.split(" ", 1)[0] for p in problems] == ["crm.objects.contacts.read", "crm.objects.owners.read"]


def test_missing_properties_names_each_absent_property_and_a_missing_schema_scope(
    emulator: HubSpotEmulator, clock: Clock
) -> None:
    api = api_for(emulator, clock)
    assert missing_properties(api, FieldMap()) == []
    missing = missing_properties(api, FieldMap(tier="account_tier", intent="buying_intent"))
    assert [m.split(":", 1)[0] for m in missing] == ["contacts.account_tier", "contacts.buying_intent"]
    assert all("no such property" in m for m in missing)

    blind = api_for(emulator, clock, *without("crm.schemas.contacts.read"), token="pat-s")
    (problem,) = missing_properties(blind, FieldMap(tier="account_tier"))
    assert "crm.schemas.contacts.read" in problem and "could not be listed" in problem


def test_ensure_properties_twice_creates_once_and_a_missing_scope_is_named(
    emulator: HubSpotEmulator, clock: Clock
) -> None:
    writer = HubSpotWriter(api_for(emulator, clock), FieldMap())
    assert writer.ensure_properties() == [f"tasks.{KEY_PROPERTY}", f"notes.{KEY_PROPERTY}"]
    assert writer.ensure_properties() == []  # already there: harmless
    for object_type in ("tasks", "notes"):
        definition = emulator.store.property_defs[object_type][KEY_PROPERTY]
        # Unique values were asked for and refused (not supported on engagements): a plain property.
        assert not definition.has_unique_value and definition.type == "string"
    checks = writer.key_checks()
    assert [ok for ok, _message in checks] == [True, True]
    assert all("not unique" in message and "searches by key" in message for _ok, message in checks)

    fresh = HubSpotEmulator(clock=clock)
    with fresh:
        limited = HubSpotWriter(api_for(fresh, clock, *without("crm.schemas.notes.write"), token="pat-n"),
                                FieldMap())
        with pytest.raises(PermanentError, match=r"missing scope crm\.schemas\.notes\.write"):
            limited.ensure_properties()
        assert KEY_PROPERTY in fresh.store.property_defs["tasks"]  # the granted half was done
