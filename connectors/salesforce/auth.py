"""Logging in to Salesforce, three ways, and telling the admin which credential is wrong.

1. username + password + security token (SOAP login at https://{domain}.salesforce.com, domain
   `login` for production, `test` for sandboxes, or the My Domain prefix such as `acme.my`);
2. OAuth client credentials of a connected app (token endpoint
   https://{domain}.salesforce.com/services/oauth2/token; the flow needs the My Domain prefix,
   Salesforce refuses it on login/test) with a "Run As" user set in the app's policies;
3. an existing session id + instance URL (no renewal possible: when it expires, a new one is needed).

Secrets are held in fields excluded from repr and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError
from simple_salesforce.login import SalesforceLogin

from connectors.salesforce.client import DEFAULT_VERSION, Relogin, SalesforceClient, build_sf
from connectors.salesforce.errors import error_code


@dataclass(frozen=True)
class SalesforceCredentials:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    session_id: str | None = field(default=None, repr=False)
    instance_url: str | None = None
    domain: str = "login"
    version: str = DEFAULT_VERSION

    @property
    def method(self) -> str:
        if self.username and self.password is not None:
            return "password"
        if self.client_id and self.client_secret:
            return "client_credentials"
        if self.session_id and self.instance_url:
            return "session"
        raise ValueError("no Salesforce credentials: set SIDECAR_SF_USERNAME + SIDECAR_SF_PASSWORD + "
                         "SIDECAR_SF_SECURITY_TOKEN, or SIDECAR_SF_CLIENT_ID + SIDECAR_SF_CLIENT_SECRET "
                         "(+ SIDECAR_SF_DOMAIN = your My Domain), or SIDECAR_SF_SESSION_ID + "
                         "SIDECAR_SF_INSTANCE_URL")


def _domain(credentials: SalesforceCredentials) -> str:
    # Accept "acme.my", "acme.my.salesforce.com" or "https://acme.my.salesforce.com".
    host = urlsplit(credentials.domain).hostname or credentials.domain
    return host.removesuffix(".salesforce.com")


def login_function(credentials: SalesforceCredentials, http: requests.Session | None) -> Relogin | None:
    """A callable that logs in afresh, or None for a bare session id (nothing to log in with)."""
    method, domain = credentials.method, _domain(credentials)
    if method == "password":
        if credentials.client_id and credentials.client_secret:  # OAuth username-password flow
            return lambda: SalesforceLogin(
                username=credentials.username, password=(credentials.password or "")
                + (credentials.security_token or ""), consumer_key=credentials.client_id,
                consumer_secret=credentials.client_secret, domain=domain, session=http)
        return lambda: SalesforceLogin(
            username=credentials.username, password=credentials.password,
            security_token=credentials.security_token or "", domain=domain,
            sf_version=credentials.version, session=http)
    if method == "client_credentials":
        if domain in ("login", "test"):
            raise ValueError("OAuth client credentials need your My Domain: set SIDECAR_SF_DOMAIN to e.g. "
                             "acme.my (Setup > My Domain); Salesforce refuses this flow on login/test")
        return lambda: SalesforceLogin(
            consumer_key=credentials.client_id, consumer_secret=credentials.client_secret,
            domain=domain, session=http)
    return None


def connect(credentials: SalesforceCredentials, http: requests.Session | None = None, *,
            defer_login: bool = False) -> SalesforceClient:
    """Log in (when needed) and return a client that renews an expired session once by itself.
    `defer_login`: log in at the client's first call instead (see SalesforceClient.sf)."""
    relogin = login_function(credentials, http)
    if relogin is not None and defer_login:
        return SalesforceClient(None, relogin, version=credentials.version, http=http)
    if relogin is not None:
        session_id, instance = relogin()
    else:
        assert credentials.session_id is not None and credentials.instance_url is not None
        parts = urlsplit(credentials.instance_url)
        session_id, instance = credentials.session_id, parts.netloc or credentials.instance_url
    sf = build_sf(session_id, instance, http, credentials.version)
    return SalesforceClient(sf, relogin, version=credentials.version)


_RESET_HELP = ("SIDECAR_SF_SECURITY_TOKEN is wrong or missing: reset it in Salesforce Setup > "
    "My Personal Information > Reset My Security Token (it is e-mailed to the integration user; "
    "a password change also invalidates it)")


def _login_message(credentials: SalesforceCredentials, exc: SalesforceAuthenticationFailed) -> str:
    code = str(exc.code or "")
    if credentials.method == "client_credentials" or credentials.client_id:
        if code == "invalid_client_id":
            return ("SIDECAR_SF_CLIENT_ID is wrong: copy the Consumer Key from Setup > App Manager > "
                    "your connected app > View > Manage Consumer Details")
        if code == "invalid_client":
            return ("SIDECAR_SF_CLIENT_SECRET is wrong: copy the Consumer Secret from Setup > App Manager > "
                    "your connected app > View > Manage Consumer Details")
        if credentials.method == "client_credentials":
            return ("the connected app refused client credentials: enable 'Client Credentials Flow' and "
                    f"set a 'Run As' user in its policies ({code}: {exc.auth_message})")
    if code == "LOGIN_MUST_USE_SECURITY_TOKEN" or not credentials.security_token:
        return _RESET_HELP
    sandbox = _domain(credentials) == "login" and (credentials.username or "").count(".") > 1
    hint = " (a sandbox? set SIDECAR_SF_DOMAIN=test)" if sandbox else ""
    return ("SIDECAR_SF_USERNAME, SIDECAR_SF_PASSWORD or SIDECAR_SF_SECURITY_TOKEN was refused" + hint +
            f" ({code}). Most often the security token changed with a password reset: " + _RESET_HELP)


def check_credentials(credentials: SalesforceCredentials, http: requests.Session | None = None) -> str:
    """Log in and make one API call; returns 'ok: ...' or a message naming the wrong credential."""
    try:
        client = connect(credentials, http)
    except ValueError as exc:
        return str(exc)
    except SalesforceAuthenticationFailed as exc:
        return _login_message(credentials, exc)
    except requests.RequestException as exc:
        return f"cannot reach Salesforce (SIDECAR_SF_DOMAIN / SIDECAR_SF_INSTANCE_URL?): {type(exc).__name__}"
    try:
        client.raw(lambda sf: sf.limits())
    except SalesforceError as exc:
        if exc.status == 401 or error_code(exc) == "INVALID_SESSION_ID":
            return ("SIDECAR_SF_SESSION_ID is expired or invalid: issue a new session (or configure "
                    "username/password/token or client credentials so the sidecar can log in itself)")
        return f"logged in, but the API refused a call ({error_code(exc) or exc.status}): check the " \
               "integration user's profile has 'API Enabled'"
    except requests.RequestException as exc:
        return f"cannot reach Salesforce at {client.instance_url} (SIDECAR_SF_INSTANCE_URL?): " \
               f"{type(exc).__name__}"
    usage = client.api_usage()
    shown = f"; API usage {usage[0]}/{usage[1]} today" if usage else ""
    return f"ok: {credentials.method} login to {client.instance_url}{shown}"
