"""Bearer-token guard for a path prefix, as a pure ASGI middleware: it answers 401 from the headers
alone, before FastAPI reads or parses a body, so an anonymous caller can make the app do nothing
more than compare one header (FastAPI itself reads and parses a JSON body before it runs a route's
dependencies: a malformed body got a 422 and a large one was read whole before the token check).

The token is read from `Authorization: Bearer ...` only, never from the query string (URLs end up
in proxy logs and browser history), and compared in constant time. A missing and a wrong token get
the same answer. `GuardedRouter` is how a router asks `create_app` for the guard; the admin API
uses it, and any later router under its own prefix (a dashboard, an API for other tools) can too.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter

from sidecar.web.limits import ASGIApp, Receive, Scope, Send, send_json


class GuardedRouter(APIRouter):
    """An APIRouter whose every path under `prefix` needs `Authorization: Bearer <token>`."""

    def __init__(self, *, prefix: str, token: str, **kwargs: Any) -> None:
        if not token:
            # An empty token would make compare_digest(b"", b"") succeed for every anonymous caller.
            raise ValueError(f"the routes under {prefix} need a non-empty token; leave them unmounted otherwise")
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"prefix must look like /admin, not {prefix!r}")
        super().__init__(prefix=prefix, **kwargs)
        self.token = token


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def bearer_matches(headers: list[tuple[bytes, bytes]], expected: bytes) -> bool:
    given = b""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            given = credentials.strip() if scheme.lower() == b"bearer" else b""
            break
    return hmac.compare_digest(given, expected)


class BearerGuard:
    """`app.add_middleware(BearerGuard, prefix="/admin", token=...)`."""

    def __init__(self, app: ASGIApp, prefix: str, token: str) -> None:
        self.app, self.prefix, self.expected = app, prefix, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and under(scope["path"], self.prefix) \
                and not bearer_matches(list(scope.get("headers") or []), self.expected):
            await send_json(send, 401, "missing or wrong token", [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)
