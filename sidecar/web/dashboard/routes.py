"""The dashboard's pages and its actions (revert, snooze, compliance decision), under /dashboard.

Pages need a session cookie (any role); actions need a manager or admin and the form's CSRF token,
checked before the body is parsed further. Every action is audited with the user's name as actor.
"""


import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sidecar import audit
from sidecar.engine import clocks
from sidecar.engine.patterns.compliance_decisions import ComplianceError, decide
from sidecar.engine.patterns.shared import EngineContext
from sidecar.engine.revert import RevertError, revert_reassignment
from sidecar.explain import explain
from sidecar.store.db import transaction
from sidecar.store.models import Lead
from sidecar.web.auth import Role, Sessions, User, find_user
from sidecar.web.dashboard import charts, pages, people, queries, rules, timeline
from sidecar.web.dashboard.pages import render

MAX_FORM_BYTES = 8192
SNOOZE = timedelta(minutes=15)
LOGIN_NONCE = "sidecar_login"


class Viewer:
    """The logged-in user and the CSRF token their forms must carry."""

    def __init__(self, user: User, csrf: str) -> None:
        self.user, self.csrf = user, csrf

    @property
    def can_act(self) -> bool:
        return self.user.role >= Role.MANAGER


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    return {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}


def dashboard_router(sessions: sessionmaker[Session], ctx: EngineContext, users: dict[str, User],
                     signer: Sessions, clock: Callable[[], datetime], secure: bool = False) -> APIRouter:
    """`secure`: mark the session cookie Secure (the public URL is https, e.g. behind a TLS proxy)."""
    router = APIRouter(prefix="/dashboard", include_in_schema=False)

    def viewer(request: Request) -> Viewer:
        found = signer.read(request.cookies.get(Sessions.COOKIE), clock())
        if found is None:
            raise HTTPException(303, headers={"Location": "/dashboard/login"})
        return Viewer(*found)

    async def actor(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> tuple[Viewer, dict[str, str]]:
        if not who.can_act:
            raise HTTPException(403, f"{who.user.name} is a {who.user.role.name.lower()}: only managers and "
                                     "admins may change leads")
        form = await _form(request)
        if not hmac.compare_digest(form.get("csrf", ""), who.csrf):
            raise HTTPException(403, "the form is out of date (CSRF check failed): reload the page and try again")
        return who, form

    @router.get("/static/style.css")
    def style() -> Response:
        return Response(pages.STYLE, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @router.get("/login")
    def login_page(error: str = "") -> Response:
        nonce = secrets.token_hex(16)
        response = render("login.html", nonce=nonce, error=error, has_users=bool(users))
        response.set_cookie(LOGIN_NONCE, nonce, httponly=True, samesite="strict", path="/dashboard")
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        nonce = request.cookies.get(LOGIN_NONCE, "")
        if not nonce or not hmac.compare_digest(form.get("nonce", ""), nonce):
            return RedirectResponse("/dashboard/login?error=expired", 303)
        user = find_user(users, form.get("token", ""))
        if user is None:
            return RedirectResponse("/dashboard/login?error=token", 303)
        response = RedirectResponse("/dashboard/", 303)
        response.set_cookie(Sessions.COOKIE, signer.issue(user, clock()), httponly=True, samesite="strict",
                            secure=secure or request.url.scheme == "https",
                            max_age=int(Sessions.LIFETIME.total_seconds()))
        response.delete_cookie(LOGIN_NONCE, path="/dashboard")
        return response

    @router.post("/logout")
    async def logout(_: Annotated[Viewer, Depends(viewer)]) -> Response:
        response = RedirectResponse("/dashboard/login", 303)
        response.delete_cookie(Sessions.COOKIE)
        return response

    @router.get("/")
    def overview(who: Annotated[Viewer, Depends(viewer)]) -> Response:
        with transaction(sessions) as session:
            view = queries.overview(session, ctx.book, clock())
        return render("overview.html", who=who, page="overview", view=view)

    @router.get("/leads")
    def leads(who: Annotated[Viewer, Depends(viewer)], state: str = "", limit: int = 200) -> Response:
        with transaction(sessions) as session:
            query = select(Lead).order_by(Lead.crm_modified_at.desc()).limit(min(max(limit, 1), 1000))
            rows = list(session.scalars(query.where(Lead.state == state) if state else query))
            reps, teams = queries.names(session)
        return render("leads.html", who=who, page="leads", leads=rows, reps=reps, teams=teams, state=state)

    @router.get("/leads/{crm}/{crm_id}")
    def lead_page(crm: str, crm_id: str, who: Annotated[Viewer, Depends(viewer)], done: str = "",
                  error: str = "") -> Response:
        with transaction(sessions) as session:
            lead = timeline.find_lead(session, crm, crm_id)
            if lead is None:
                return render("missing.html", 404, who=who, page="leads", crm=crm, crm_id=crm_id)
            reps, teams = queries.names(session)
            return render("lead.html", who=who, page="leads", lead=lead, reps=reps, teams=teams,
                          entries=timeline.timeline(session, lead, reps), can=timeline.actions(session, ctx.book, lead),
                          explained=explain(session, ctx.book, crm, crm_id, clock()),
                          record_url=ctx.links.url(crm, crm_id), done=done, error=error)

    def back(crm: str, crm_id: str, **query: str) -> RedirectResponse:
        params = "&".join(f"{key}={quote(value)}" for key, value in query.items())
        return RedirectResponse(f"/dashboard/leads/{quote(crm)}/{quote(crm_id)}?{params}", 303)

    @router.post("/leads/{crm}/{crm_id}/revert")
    def revert(crm: str, crm_id: str, acting: Annotated[tuple[Viewer, dict[str, str]], Depends(actor)]) -> Response:
        who, form = acting
        try:
            with transaction(sessions) as session:
                row = revert_reassignment(session, ctx, crm, crm_id, f"dashboard:{who.user.name}",
                                          form.get("reason", "")[:2000], clock())
                message = f"reverted: the lead goes back to {row.details['to_owner']} (audit #{row.id})"
        except RevertError as err:
            return back(crm, crm_id, error=str(err))
        return back(crm, crm_id, done=message)

    @router.post("/leads/{crm}/{crm_id}/snooze")
    def snooze(crm: str, crm_id: str, acting: Annotated[tuple[Viewer, dict[str, str]], Depends(actor)]) -> Response:
        who, _ = acting
        now = clock()
        with transaction(sessions) as session:
            lead = timeline.find_lead(session, crm, crm_id)
            if lead is None or timeline.actions(session, ctx.book, lead).snooze_rule is None:
                return back(crm, crm_id, error="nothing to snooze: no pending warning, or it was snoozed already")
            open_clock = timeline.sla_clock(session, lead)
            if open_clock is None:  # no running SLA clock: nothing a snooze could move
                return back(crm, crm_id, error="nothing to snooze: no pending warning, or it was snoozed already")
            key, before = timeline.snooze_key(open_clock), open_clock.next_due_at
            after = clocks.snooze(open_clock, SNOOZE)
            audit.record(session, at=now, kind="notification_snoozed", lead=lead, actor=f"dashboard:{who.user.name}",
                         step_key=key, rule_id=timeline.actions(session, ctx.book, lead).snooze_rule,
                         policy_version=open_clock.policy_version,
                         details={"clock_id": open_clock.id, "step": open_clock.steps_fired, "via": "dashboard",
                                  "from_due_at": before.isoformat() if before else None,
                                  "to_due_at": after.isoformat(), "delay_s": int(SNOOZE.total_seconds())})
        return back(crm, crm_id, done=f"snoozed: the next step moves to {after:%H:%M} UTC")

    @router.post("/leads/{crm}/{crm_id}/compliance")
    def compliance(crm: str, crm_id: str, acting: Annotated[tuple[Viewer, dict[str, str]], Depends(actor)]) -> Response:
        who, form = acting
        decision = form.get("decision", "")
        try:
            with transaction(sessions) as session:
                row = decide(session, ctx, crm, crm_id, decision, f"dashboard:{who.user.name}",
                             form.get("reason", "")[:2000], clock())
                message = (f"{'cleared: the lead is NEW again' if decision == 'clear' else 'rejected: disqualified'}"
                           f" (audit #{row.id})")
        except ComplianceError as err:
            return back(crm, crm_id, error=str(err))
        return back(crm, crm_id, done=message)

    @router.get("/owners")
    def owners(who: Annotated[Viewer, Depends(viewer)]) -> Response:
        with transaction(sessions) as session:
            rows = people.owner_rows(session, ctx.book, clock())
        return render("owners.html", who=who, page="owners", rows=rows)

    @router.get("/teams")
    def teams(who: Annotated[Viewer, Depends(viewer)]) -> Response:
        with transaction(sessions) as session:
            rows = people.team_rows(session, ctx.book, clock())
        return render("teams.html", who=who, page="teams", rows=rows)

    @router.get("/rules")
    def rules_page(who: Annotated[Viewer, Depends(viewer)]) -> Response:
        with transaction(sessions) as session:
            rows, versions = rules.rule_views(session, ctx.book), rules.versions(session, ctx.book)
        return render("rules.html", who=who, page="rules", rows=rows, versions=versions)

    @router.get("/charts")
    def charts_page(who: Annotated[Viewer, Depends(viewer)]) -> Response:
        now = clock()
        with transaction(sessions) as session:
            response_chart, _ = charts.response_distribution(session, ctx.book)
            figures = [charts.breaches_over_time(session, ctx.book, now, "market"),
                       charts.breaches_over_time(session, ctx.book, now, "source"),
                       response_chart, charts.hit_rate_by_team(session, ctx.book, now),
                       charts.speed_vs_outcome(session, now)]
        return render("charts.html", who=who, page="charts", figures=figures)

    return router
