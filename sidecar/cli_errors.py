"""Turn what goes wrong under a `sidecar` command into one line with the cause and the fix.

An admin's first hour is full of conditions they caused and can fix: an API they cannot reach, a
credential they have not set, a port something else holds. Each is one line on stderr and exit code
1 (2 for usage mistakes); `sidecar --debug ...` shows the traceback instead. Connector exceptions are
recognised by shape (the chain of causes), since the core does not import connectors or SDKs.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from sidecar.failures import STORAGE_FULL, storage_full
from sidecar.ports import PermanentError, TransientError


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib3 MaxRetryError / urllib URLError keep it here
        current = current.__cause__ or current.__context__ or (reason if isinstance(reason, BaseException)
                                                               else None)


def _host(exc: BaseException) -> str | None:
    """The host a failed request went to, from urllib3 (pool, url) or requests/urllib (request)."""
    for item in _chain(exc):
        pool = getattr(item, "pool", None)
        host = getattr(pool, "host", None)
        if host:
            port = getattr(pool, "port", None)
            return str(host) + (f":{port}" if port not in (None, 80, 443) else "")
        for url in (getattr(item, "url", None), getattr(getattr(item, "request", None), "url", None),
                    getattr(item, "full_url", None)):
            if isinstance(url, str) and urlsplit(url).hostname:
                return urlsplit(url).netloc.rsplit("@", 1)[-1]
    return None


def _network_reason(exc: BaseException) -> str | None:
    """'connection refused', 'host name not found', ... when the chain holds a network failure."""
    for item in _chain(exc):
        if isinstance(item, socket.gaierror):
            return "host name not found"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, ConnectionResetError):
            return "connection reset"
        if isinstance(item, TimeoutError | socket.timeout):
            return "timed out"
        if isinstance(item, ssl.SSLError):
            return f"TLS handshake failed ({item.reason or item})"
        if isinstance(item, OSError) and item.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable"
    for item in _chain(exc):  # shapes without an OSError underneath (name resolution in urllib3)
        name = type(item).__name__
        if name == "NameResolutionError":
            return "host name not found"
        if name in ("NewConnectionError", "ConnectionError", "ConnectTimeout", "ConnectTimeoutError",
                    "MaxRetryError", "URLError"):
            return "cannot connect"
    return None


def explain(exc: BaseException, target: str = "the API") -> str:
    """One line: what went wrong and what to do about it (`target` names the API when the error does not)."""
    reason = _network_reason(exc)
    if reason is not None:
        return (f"cannot reach {_host(exc) or target}: {reason} (check the network, a proxy, and the API's "
                "base URL setting; `sidecar check` tests every configured system)")
    if isinstance(exc, PermanentError | TransientError):
        return str(exc)  # connector messages already name the credential, scope or field to fix
    if isinstance(exc, ValidationError):  # pydantic-settings: a SIDECAR_* variable with a bad value
        first = exc.errors(include_url=False)[0]
        name = "SIDECAR_" + "_".join(str(part) for part in first["loc"]).upper()
        return f"setting {name} is invalid: {first['msg']} (fix it in .env or the environment)"
    if storage_full(exc):
        return STORAGE_FULL
    if isinstance(exc, SQLAlchemyError):
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return f"database error: {detail} (check SIDECAR_DATABASE_URL and that the database is running)"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"address already in use: {exc.strerror} (stop the other process or choose another port)"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot open {exc.filename}: {exc.strerror}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return (f"unexpected {type(exc).__name__}{': ' + text if text else ''} "
            "(rerun with `sidecar --debug ...` to see the traceback, and please report it)")


def port_problem(port: int, option: str) -> str | None:
    """Why the web receivers could not listen on `port` (None when it is free or 0 = any)."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once: conflicts on any address
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is already in use (stop what listens there or choose another with {option})"
            if exc.errno == errno.EACCES:
                return f"port {port} needs root privileges (choose one above 1023 with {option})"
            raise
    return None
