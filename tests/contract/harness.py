"""Helpers the contract tests share with their fixtures (tests/contract/conftest.py): virtual time,
starting emulators, and building the HubSpot connector's API client."""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta
from typing import TypeVar

from connectors.emulators.http import Emulator
from connectors.emulators.hubspot import DEFAULT_TOKEN, HubSpotEmulator
from connectors.hubspot.api import HubSpotApi
from connectors.hubspot.auth import Credentials, HubSpotAuth
from connectors.hubspot.limits import LimitSettings, RateLimiter

E = TypeVar("E", bound=Emulator)


class Clock:
    """Virtual time for an emulator (and the connector's rate limiter, which sleeps by advancing
    it): frozen unless a test advances it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        self.now += timedelta(seconds=seconds, **delta)

    def seconds(self) -> float:
        return self.now.timestamp()

    def millis(self) -> int:
        return int(self.now.timestamp() * 1000)


class Serve:
    """Starts emulators (over TLS when given a server context) and stops them all at teardown."""

    def __init__(self) -> None:
        self.started: list[Emulator] = []

    def __call__(self, emulator: E, ssl_context: ssl.SSLContext | None = None) -> E:
        emulator.start(ssl_context=ssl_context)
        self.started.append(emulator)
        return emulator

    def stop_all(self) -> None:
        for emulator in reversed(self.started):
            emulator.stop()
        self.started.clear()


def make_api(emulator: HubSpotEmulator, clock: Clock, *, token: str = DEFAULT_TOKEN, **limits: int) -> HubSpotApi:
    """The connector's HubSpot API client for the emulator, rate limited in the clock's virtual time."""
    auth = HubSpotAuth(Credentials(token, host=emulator.url))
    return HubSpotApi(auth, RateLimiter(LimitSettings(**limits), clock.seconds, clock.advance))
