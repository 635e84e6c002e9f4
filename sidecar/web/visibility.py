"""The routers people and monitoring read: dashboard (/dashboard), JSON API (/api), /metrics.

Built from settings by `sidecar run` (sidecar.wiring) and with fixed demo users by `sidecar demo`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, RedirectResponse
from sqlalchemy.orm import Session, sessionmaker

from sidecar import metrics
from sidecar.engine.patterns.shared import EngineContext
from sidecar.store.db import transaction
from sidecar.web.api import api_router
from sidecar.web.auth import Sessions, User
from sidecar.web.dashboard.routes import dashboard_router

DASHBOARD_PATH = "/dashboard/"


def metrics_router(sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    def scrape() -> PlainTextResponse:
        with transaction(sessions) as session:
            return PlainTextResponse(metrics.render(session, clock()), media_type=metrics.CONTENT_TYPE)

    @router.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PATH, 303)

    return router


def visibility_routers(sessions: sessionmaker[Session], ctx: EngineContext, users: dict[str, User],
                       cookie_secret: str | None, clock: Callable[[], datetime],
                       public_url: str | None = None) -> list[APIRouter]:
    secure = bool(public_url and public_url.startswith("https://"))
    return [dashboard_router(sessions, ctx, users, Sessions(cookie_secret), clock, secure),
            api_router(sessions, ctx, users, clock), metrics_router(sessions, clock)]
