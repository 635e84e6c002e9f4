"""Who may log in to the emulated org, and the two login flows simple-salesforce uses.

* `POST /services/oauth2/token`: grant_type=password (password + security token appended, as in a
  real org) and client_credentials (client id/secret in the form or in HTTP Basic auth).
* `POST /services/Soap/u/{version}`: the partner-API SOAP `login` that simple-salesforce sends for
  `Salesforce(username=, password=, security_token=)`.

Both answer with the emulator itself as the instance, so the REST calls that follow come back here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import string
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from connectors.emulators.http import Request, Response

_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_OAUTH_FAILURE = {"error": "invalid_grant", "error_description": "authentication failure"}
_BAD_CLIENT = {"error": "invalid_client", "error_description": "invalid client credentials"}


@dataclass
class Credentials:
    password: str
    security_token: str
    user_id: str


@dataclass
class LoginDirectory:
    org_id: str
    clock: Callable[[], datetime]
    is_active: Callable[[str], bool]
    run_as: str = ""  # the user a client_credentials token acts as
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    credentials: dict[str, Credentials] = field(default_factory=dict)
    apps: dict[str, str] = field(default_factory=dict)  # client_id -> client_secret
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> user id

    def issue(self, user_id: str) -> str:
        # Shaped like a real session id (org id, '!', opaque part) so log redaction can be tested.
        alphabet = string.ascii_letters + string.digits
        token = f"{self.org_id[:15]}!AQ{''.join(self.rng.choice(alphabet) for _ in range(40))}"
        self.tokens[token] = user_id
        return token

    def user_for(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return None
        user_id = self.tokens.get(token.strip())
        return user_id if user_id is not None and self.is_active(user_id) else None

    def _check_password(self, username: str, password: str) -> str | None:
        entry = self.credentials.get(username)
        if entry is None or not self.is_active(entry.user_id):
            return None
        # The API takes the security token glued to the password.
        expected = (entry.password + entry.security_token).encode()
        return entry.user_id if hmac.compare_digest(expected, password.encode()) else None

    def _check_app(self, client_id: str | None, client_secret: str | None) -> dict[str, str] | None:
        if client_id not in self.apps:
            return {"error": "invalid_client_id", "error_description": "client identifier invalid"}
        if not hmac.compare_digest(self.apps[client_id].encode(), (client_secret or "").encode()):
            return _BAD_CLIENT
        return None

    def oauth_token(self, request: Request, instance_url: str) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return Response(400, _BAD_CLIENT)
        grant = form.get("grant_type")
        if grant not in ("password", "client_credentials"):
            return Response(400, {"error": "unsupported_grant_type",
                                  "error_description": "grant type not supported"})
        app_error = self._check_app(client_id, client_secret)
        if app_error is not None:
            return Response(400, app_error)
        if grant == "password":
            user_id = self._check_password(form.get("username", ""), form.get("password", ""))
        else:
            user_id = self.run_as if self.run_as and self.is_active(self.run_as) else None
        if user_id is None:
            return Response(400, _OAUTH_FAILURE)
        identity = f"{instance_url}/id/{self.org_id}/{user_id}"
        issued_at = str(int(self.clock().timestamp() * 1000))
        # Salesforce signs id + issued_at with the consumer secret (HMAC-SHA256, base64).
        key = (client_secret or "").encode()
        digest = hmac.new(key, (identity + issued_at).encode(), hashlib.sha256).digest()
        return Response(200, {
            "access_token": self.issue(user_id), "instance_url": instance_url, "id": identity,
            "token_type": "Bearer", "issued_at": issued_at, "signature": base64.b64encode(digest).decode(),
        })

    def soap_login(self, request: Request, instance_url: str, version: str) -> Response:
        username = password = ""
        try:
            for element in ET.fromstring(request.body).iter():
                local = element.tag.rsplit("}", 1)[-1]
                if local == "username":
                    username = element.text or ""
                elif local == "password":
                    password = element.text or ""
        except ET.ParseError:
            return _soap_fault("INVALID_LOGIN", "Invalid request body")
        user_id = self._check_password(username, password)
        if user_id is None:
            return _soap_fault("INVALID_LOGIN",
                               "Invalid username, password, security token; or user locked out.")
        server = f"{instance_url}/services/Soap/u/{version}/{self.org_id}"
        # simple-salesforce reads <sessionId> and <serverUrl> by tag name, without a prefix.
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{_SOAP_ENV}" '
            'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
            f"<metadataServerUrl>{instance_url}/services/Soap/m/{version}/{self.org_id}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{server}</serverUrl><sessionId>{escape(self.issue(user_id))}</sessionId>"
            f"<userId>{user_id}</userId><userInfo><organizationId>{self.org_id}</organizationId>"
            f"<userName>{escape(username)}</userName></userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(200, body, content_type="text/xml; charset=utf-8")


def _soap_fault(code: str, message: str) -> Response:
    # simple-salesforce looks for the literal tag names `sf:exceptionCode` / `sf:exceptionMessage`.
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{_SOAP_ENV}" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}"
        f'</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}'
        f"</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:LoginFault>"
        "</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(500, body, content_type="text/xml; charset=utf-8")
