"""Schemathesis against the app's own OpenAPI schema (the full one, from /admin/openapi.json with
the token, so the admin routes are exercised past their auth): no generated request may get a 5xx.
The budget is small and fixed so that the run stays within seconds in CI."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.openapi.loaders import from_asgi
from sqlalchemy.orm import Session, sessionmaker

from tests.security.support import ADMIN_TOKEN, App
from tests.support import apply_policy, ny, policy_raw

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def api_schema(sessions: sessionmaker[Session]) -> schemathesis.BaseSchema:
    apply_policy(sessions, policy_raw(), ny(1, 0))
    loaded = from_asgi("/admin/openapi.json", App(sessions).app, headers=AUTH)
    assert "/admin/leads/{crm}/{crm_id}/revert" in loaded.raw_schema["paths"]  # the admin API is fuzzed too
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx(case: schemathesis.Case) -> None:
    response = case.call(headers=AUTH)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
