"""Fixtures shared by the contract tests.

Each module still defines its own `clock` (a `harness.Clock` at its START) and, where it needs an
emulator configured its own way, its own `emu` (Salesforce) or `emulator` (HubSpot) built with the
`serve` factory. The client fixtures here (`client`, `sf`, `api`) connect to whichever emulator the
requesting module provides.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from simple_salesforce.api import Salesforce

from connectors.emulators.hubspot import HubSpotEmulator
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS, make_loopback_tls
from connectors.hubspot.api import HubSpotApi
from connectors.salesforce.auth import SalesforceCredentials, connect
from connectors.salesforce.client import SalesforceClient
from tests.contract.harness import Clock, Serve, make_api


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start an emulator with `serve(emulator)` or, over TLS, `serve(emulator, tls.server_context)`."""
    server = Serve()
    yield server
    server.stop_all()


# --- Salesforce (over TLS) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTLS:
    return make_loopback_tls(Path(tmp_path_factory.mktemp("ca")))


@pytest.fixture
def http(tls: LoopbackTLS) -> Iterator[requests.Session]:
    session = tls.client_session()
    yield session
    session.close()


@pytest.fixture
def client(emu: SalesforceEmulator, http: requests.Session) -> SalesforceClient:
    """The connector's Salesforce client for the module's `emu`."""
    return connect(SalesforceCredentials(session_id=emu.access_token, instance_url=emu.url), http)


@pytest.fixture
def sf(emu: SalesforceEmulator, http: requests.Session) -> Salesforce:
    """The unmodified simple-salesforce client for the module's `emu`."""
    return Salesforce(instance_url=emu.url, session_id=emu.access_token, session=http, version="59.0")


# --- HubSpot (plain HTTP) -----------------------------------------------------------------------------


@pytest.fixture
def emulator(serve: Serve, clock: Clock) -> HubSpotEmulator:
    return serve(HubSpotEmulator(clock=clock))


@pytest.fixture
def api(emulator: HubSpotEmulator, clock: Clock) -> HubSpotApi:
    """The connector's HubSpot API client for the module's `emulator`, default limits."""
    return make_api(emulator, clock)
