"""Who may look at the dashboard and the JSON API, and what they may do.

Users come from `SIDECAR_DASHBOARD_USERS="alice:manager:<token>,bob:viewer:<token>"`. The API takes the
token as `Authorization: Bearer <token>`; the dashboard takes it once on its login form and then keeps a
signed session cookie (HttpOnly, SameSite=Strict). Every form carries a CSRF token derived from the
session, so a page of another site cannot post on a manager's behalf even where SameSite is ignored.
Tokens are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum


class Role(IntEnum):
    """Ordered: each role may do what the ones below it may."""

    VIEWER = 1  # reads every page
    MANAGER = 2  # also reverts reassignments, snoozes, records PTO
    ADMIN = 3  # everything (today the same actions as a manager)


@dataclass(frozen=True)
class User:
    name: str
    role: Role


class UsersError(ValueError):
    """SIDECAR_DASHBOARD_USERS is malformed; the message names the entry and the fix (never the token)."""


MIN_TOKEN_LENGTH = 16


def parse_users(text: str, admin_token: str | None = None) -> dict[str, User]:
    """token -> user. The admin API's token (SIDECAR_ADMIN_TOKEN) is an admin called "admin"."""
    users: dict[str, User] = {}
    for index, entry in enumerate(filter(None, (part.strip() for part in text.split(","))), start=1):
        name, _, rest = entry.partition(":")
        role_name, _, token = rest.partition(":")
        where = f"SIDECAR_DASHBOARD_USERS entry {index} ({name or '?'})"
        if not name or not token:
            raise UsersError(f"{where}: write name:role:token, e.g. alice:manager:<a long random token>")
        if role_name.upper() not in Role.__members__:
            raise UsersError(f"{where}: role {role_name!r} is not viewer, manager or admin")
        if len(token) < MIN_TOKEN_LENGTH:
            raise UsersError(f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters; "
                             "make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`")
        if token in users:
            raise UsersError(f"{where}: the same token is given to two users; give each their own")
        users[token] = User(name, Role[role_name.upper()])
    if admin_token:
        users.setdefault(admin_token, User("admin", Role.ADMIN))
    return users


def find_user(users: dict[str, User], token: str) -> User | None:
    """The user holding `token`, comparing against every token in constant time."""
    found = None
    for candidate, user in users.items():
        if hmac.compare_digest(candidate.encode(), token.encode()):
            found = user
    return found


class Sessions:
    """Signed session cookies: `<payload>.<hmac>`; the payload holds name, role, expiry and a nonce."""

    COOKIE = "sidecar_session"
    LIFETIME = timedelta(hours=12)

    def __init__(self, secret: str | None) -> None:
        self._key = (secret or secrets.token_urlsafe(32)).encode()

    def _sign(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def issue(self, user: User, now: datetime) -> str:
        payload = json.dumps({"n": user.name, "r": int(user.role), "e": int((now + self.LIFETIME).timestamp()),
                              "c": secrets.token_hex(8)}, separators=(",", ":")).encode()
        encoded = base64.urlsafe_b64encode(payload).decode()
        return f"{encoded}.{self._sign(encoded.encode())}"

    def read(self, cookie: str | None, now: datetime) -> tuple[User, str] | None:
        """(user, csrf token) for a valid, unexpired cookie; None otherwise."""
        if not cookie or "." not in cookie:
            return None
        encoded, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(encoded.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(encoded.encode()))
            user, expires, nonce = User(str(data["n"]), Role(int(data["r"]))), int(data["e"]), str(data["c"])
        except (ValueError, KeyError, TypeError):
            return None
        if now.timestamp() >= expires:
            return None
        return user, self._sign(f"csrf:{nonce}".encode())
