"""Request-body limit for every route of the app: a pure ASGI middleware, so it runs before FastAPI
reads a byte of the body, before any route parses it and before any signature or token check.

A declared `Content-Length` over the limit is answered 413 at once, without calling the app. A
body without a declared length (chunked) is counted as it arrives: the moment the count passes the
limit the app's read fails, whatever response the app then tries to send is dropped and a 413 goes
out instead, with `Connection: close`, so the rest of the body is never read (uvicorn stops reading
a connection whose request body was not consumed). Memory per request therefore stays within the
limit plus one chunk, however much a client sends.

The limit comes from `SIDECAR_MAX_BODY_BYTES`. The largest legitimate bodies are a HubSpot webhook
batch (at most 100 events of a few hundred bytes) and a Salesforce Outbound Message (at most 100
notifications, per Salesforce's "Understanding Notifications": a few KB each even with long text
fields), both far below the 5 MB default.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024


class BodyTooLarge(Exception):
    """Raised into the app's `receive` once the body passes the limit (the app cannot go on)."""


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header as a number; None when absent; -1 when it is not ASCII digits."""
    for name, value in scope.get("headers") or []:
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else -1
    return None


async def send_json(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """`app.add_middleware(BodyLimit, max_bytes=...)`: 413 for any request body over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("the body limit must be at least 1 byte")
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self) -> str:
        return f"request body larger than {self.max_bytes} bytes (SIDECAR_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared == -1:
            await send_json(send, 400, "malformed Content-Length", [(b"connection", b"close")])
            return
        if declared is not None and declared > self.max_bytes:
            await send_json(send, 413, self._too_large(), [(b"connection", b"close")])
            return
        received, exceeded, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(self._too_large())
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it could not read; ours goes out below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            # Routes may wrap the read error in their own (FastAPI turns it into a 400); only an
            # exception that is not about the limit is a real failure.
            if not exceeded:
                raise
        if exceeded and not started:
            await send_json(send, 413, self._too_large(), [(b"connection", b"close")])


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json` (lower case; "" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()
