"""Credentials, the hubspot-api-client instance built from them, and the access check.

Two ways in: a private-app access token (the usual install) or an OAuth access token with the
refresh token and app credentials, refreshed once when HubSpot answers 401 (`HubSpotApi` drives
that). Tokens never appear in reprs, logs or error messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import hubspot
from urllib3.util.retry import Retry

from sidecar.ports import PermanentError

if TYPE_CHECKING:
    from connectors.hubspot.api import HubSpotApi

# Tasks, notes and the owner change are contact writes in HubSpot's scope model.
WRITE_SCOPES = ("crm.objects.contacts.write",)

# HubSpot counts every request that reaches it against the account's limits, a resent one too, so
# every send must pass `HubSpotApi`'s rate gate. urllib3's default (Retry(3)) silently resends
# GET/PUT/DELETE after a read error or a dropped connection: a request the server may already
# have counted, sent behind the gate's back. So urllib3 may only retry failures to *connect*
# (nothing reached HubSpot); read errors, statuses and redirects surface to `HubSpotApi.call`,
# which resends through the gate. (Measured: the 429 in the 50k bench was not such a resend —
# client and emulator counted the same 767 requests — but nothing would have shown it if it were.)
TRANSPORT_RETRY = Retry(total=None, connect=2, read=0, redirect=0, status=0, other=0,
                        raise_on_redirect=False, raise_on_status=False)


@dataclass(frozen=True)
class Credentials:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    host: str | None = None  # None = api.hubapi.com; the emulator's URL in tests

    @property
    def is_oauth(self) -> bool:
        return bool(self.refresh_token and self.client_id and self.client_secret)


class HubSpotAuth:
    """Owns the client and its current access token."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._token = credentials.access_token
        self.client: Any = self._build()
        self.refreshes = 0

    def _build(self) -> Any:
        extra = {"host": self.credentials.host} if self.credentials.host else {}
        return hubspot.Client.create(access_token=self._token, retry=TRANSPORT_RETRY, **extra)

    @property
    def token(self) -> str:
        return self._token

    @property
    def can_refresh(self) -> bool:
        return self.credentials.is_oauth

    def refresh(self) -> None:
        """Trade the refresh token for a new access token (OAuth only)."""
        creds = self.credentials
        if not creds.is_oauth:
            raise PermanentError("HubSpot token rejected and no OAuth refresh token configured")
        raw = self.client.oauth.tokens_api.create(
            grant_type="refresh_token", refresh_token=creds.refresh_token, client_id=creds.client_id,
            client_secret=creds.client_secret, _preload_content=False)
        token = json.loads(raw.data).get("access_token")
        if not token:
            raise PermanentError("HubSpot OAuth refresh returned no access_token: re-install the app")
        self._token = str(token)
        self.client = self._build()
        self.refreshes += 1


def check_access(api: HubSpotApi) -> list[str]:
    """Messages naming each missing scope (empty = all good), from the cheapest calls there are.

    Read scopes are proven by a one-row search and a one-row owners page. Write scopes cannot be
    proven without writing; for OAuth tokens the token-info endpoint lists the granted scopes. For
    private-app tokens HubSpot's client has no token-info call, so they are verified on first write
    (a 403 there is a PermanentError naming the scope) — documented, not guessed.
    """
    problems: list[str] = []
    try:
        api.call("search", "crm.objects.search_api", "do_search", "contacts",
                 {"limit": 1, "properties": ["hs_object_id"]}, scope="crm.objects.contacts.read")
    except PermanentError as exc:
        if getattr(exc.__cause__, "status", None) == 401:  # the token itself is refused: every call would be
            return [f"SIDECAR_HUBSPOT_ACCESS_TOKEN refused: {exc}"]  # too, so one line says it all
        problems.append(f"crm.objects.contacts.read (a one-row contact search failed): {exc}")
    try:
        api.call("general", "crm.owners.owners_api", "get_page", limit=1, scope="crm.objects.owners.read")
    except PermanentError as exc:
        problems.append(f"crm.objects.owners.read (a one-row owners page failed): {exc}")
    if api.auth.credentials.is_oauth:
        try:
            info = api.call("general", "oauth.access_tokens_api", "get", api.auth.token)
        except PermanentError as exc:
            problems.append(f"could not read token info to verify write scopes: {exc}")
        else:
            granted = set(info.get("scopes") or [])
            problems += [f"{scope}: missing (needed to create tasks/notes and change owners)"
                         for scope in WRITE_SCOPES if scope not in granted]
    return problems
