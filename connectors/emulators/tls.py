"""A throwaway certificate authority so the emulators can speak real TLS on loopback.

simple-salesforce only ever builds https:// URLs, so the Salesforce emulator must serve TLS and the
client must trust it without touching the system trust store: `trustme` mints a CA and a leaf
certificate for 127.0.0.1/localhost, the server gets an `ssl.SSLContext`, the client a
`requests.Session` that verifies against the CA bundle.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import trustme
from requests.adapters import HTTPAdapter

DEFAULT_IDENTITIES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class LoopbackTLS:
    ca_bundle: Path  # PEM of the throwaway CA; what clients must trust
    server_context: ssl.SSLContext

    def client_session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.ca_bundle)
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment would otherwise win over
        # session.verify (requests merges environment settings per request), and a proxy variable
        # would route loopback traffic away.
        session.trust_env = False
        return session


def make_loopback_tls(directory: Path | None = None,
                      identities: tuple[str, ...] = DEFAULT_IDENTITIES) -> LoopbackTLS:
    """Mint a CA and a server certificate; the CA bundle is written to `directory` (a temporary
    directory removed at interpreter exit when not given)."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="emulator-ca-"))
        atexit.register(shutil.rmtree, directory, True)
    directory.mkdir(parents=True, exist_ok=True)
    ca: Any = trustme.CA()
    leaf: Any = ca.issue_cert(*identities)
    bundle = directory / "emulator-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return LoopbackTLS(ca_bundle=bundle, server_context=context)


class _RedirectAdapter(HTTPAdapter):
    """Sends requests for one fixed origin to another one, like an /etc/hosts entry would."""

    def __init__(self, target: str) -> None:
        super().__init__()
        parts = urlsplit(target)
        self._scheme, self._netloc = parts.scheme, parts.netloc

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.url = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))
        return super().send(request, *args, **kwargs)


def route_login_domain(session: requests.Session, emulator_url: str, domain: str = "login") -> None:
    """Make `https://{domain}.salesforce.com` reach the emulator on this session.

    simple-salesforce hard-codes the login host (`https://{domain}.salesforce.com/services/Soap/u/..`
    and `/services/oauth2/token`), so a loopback port cannot be passed as `domain`. The login
    responses then name the emulator itself as the instance, so only login calls are redirected.
    """
    session.mount(f"https://{domain}.salesforce.com/", _RedirectAdapter(emulator_url))
