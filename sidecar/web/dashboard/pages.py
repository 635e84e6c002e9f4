"""Rendering: the Jinja2 environment (autoescaped, templates and CSS shipped in the package) and filters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
STYLE = (HERE / "static" / "style.css").read_text(encoding="utf-8")


def _when(at: datetime | None) -> str:
    return f"{at.astimezone(UTC):%a %d %b %H:%M} UTC" if at is not None else "never"


def _percent(share: float | None) -> str:
    return f"{share:.0%}" if share is not None else "–"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    minutes = int(seconds // 60)
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


def _waited(seconds: float) -> str:
    """A queue item's age: minutes, then hours, then days and hours (aging is read at a glance)."""
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} d {hours % 24} h"


ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(when=_when, percent=_percent, age=_age, waited=_waited)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = ENV.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={
        # No script runs on these pages; framing is refused (clickjacking a revert button).
        "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                   "form-action 'self'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})
