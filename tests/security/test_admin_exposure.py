"""The admin API opens no door: its token is checked before any body is read or parsed, only in
the Authorization header, in constant time; its part of the OpenAPI schema needs the token; no
CORS headers are ever sent."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from sidecar.web import guard
from tests.security.support import ADMIN_TOKEN, App

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REVERT = "/admin/leads/hubspot/501/revert"


@pytest.fixture
def app(sessions: sessionmaker[Session]) -> App:
    return App(sessions)


def test_the_public_schema_has_no_admin_paths_and_the_admin_schema_needs_the_token(app: App) -> None:
    public = app.client.get("/openapi.json")
    assert public.status_code == 200
    paths = set(public.json()["paths"])
    assert "/webhooks/hubspot" in paths and not any(p.startswith("/admin") for p in paths)
    assert "RevertBody" not in public.text  # nor the admin API's models
    assert app.client.get("/admin/openapi.json").status_code == 401
    admin = app.client.get("/admin/openapi.json", headers=AUTH)
    assert admin.status_code == 200 and REVERT.replace("hubspot/501", "{crm}/{crm_id}") in admin.json()["paths"]


@pytest.mark.parametrize("body", [b"{not json", b'{"actor": 1}', b"[]", b'{"actor": "a"}'])
def test_the_token_is_checked_before_the_body_is_parsed(app: App, body: bytes) -> None:
    response = app.client.post(REVERT, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401  # not 422: nothing about the body reaches an anonymous caller
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("query", [f"token={ADMIN_TOKEN}", f"access_token={ADMIN_TOKEN}",
                                   f"authorization=Bearer%20{ADMIN_TOKEN}"])
def test_a_token_in_the_query_string_is_not_accepted(app: App, query: str) -> None:
    assert app.client.get(f"/admin/status?{query}").status_code == 401
    assert app.client.get("/admin/status", headers=AUTH).status_code == 200


@pytest.mark.parametrize("path", ["/admin/status", "/admin/status/", "/admin", "/admin/", "/admin/nope",
                                  "/admin/openapi.json", "/admin/audit"])
def test_every_path_under_the_prefix_is_guarded(app: App, path: str) -> None:
    response = app.client.get(path, follow_redirects=False)
    assert response.status_code == 401


def test_with_the_token_a_malformed_body_is_a_client_error_never_500(app: App) -> None:
    for body in (b"{not json", b'{"actor": 1}', b"[]", b'{"actor": ""}', b"\xff"):
        response = app.client.post(REVERT, content=body, headers={**AUTH, "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (body, response.status_code)


def test_no_cors_headers_for_any_origin(app: App) -> None:
    preflight = app.client.options("/admin/status", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert not any(name.lower().startswith("access-control-") for name in preflight.headers)
    response = app.client.get("/admin/status", headers={**AUTH, "Origin": "https://evil.example"})
    assert response.status_code == 200
    assert not any(name.lower().startswith("access-control-") for name in response.headers)


def test_the_comparison_is_constant_time_and_an_empty_token_is_never_configured() -> None:
    assert guard.bearer_matches([(b"authorization", b"Bearer abc")], b"abc")
    assert not guard.bearer_matches([(b"authorization", b"Basic abc")], b"abc")
    assert not guard.bearer_matches([(b"authorization", b"Bearer abcd")], b"abc")
    assert not guard.bearer_matches([], b"abc")
    assert "compare_digest" in guard.bearer_matches.__code__.co_names
    with pytest.raises(ValueError, match="non-empty token"):
        guard.GuardedRouter(prefix="/admin", token="")
