"""`sidecar check` for Teams: each workflow URL the routes need is set, shaped like a Workflows
trigger URL, and answers. Reaching it must not post anything, so the check sends a GET: a trigger
that exists answers it with a refusal of the method (400 TriggerRequestMethodNotValid), while a
wrong signature (401/403) or a removed workflow (404) says what to fix. No URL is ever printed.
"""

from __future__ import annotations

from collections.abc import Sequence

import requests

from connectors.teams.notifier import redact_url, url_problem


def check_workflows(targets: Sequence[tuple[str, str, str | None]], *, timeout: float = 10.0,
                    allow_http: bool = False, session: requests.Session | None = None) -> list[tuple[bool, str]]:
    """(ok, message) per (what it serves, env var name, its value or None)."""
    http = session or requests.Session()
    results: list[tuple[bool, str]] = []
    for purpose, env, url in targets:
        if not url:
            results.append((False, f"{env} is not set: put the URL of {purpose} in .env (README, Microsoft Teams)"))
            continue
        problem = url_problem(url, allow_http=allow_http)
        if problem:
            results.append((False, f"{env} {problem}"))
            continue
        where = redact_url(url)
        try:
            status = http.get(url, timeout=timeout, allow_redirects=False).status_code
        except requests.RequestException as err:  # never str(err): it holds the URL and its signature
            results.append((False, f"{env}: the workflow for {purpose} is unreachable ({where}): "
                                   f"{type(err).__name__}"))
            continue
        if status in (401, 403):
            results.append((False, f"{env}: Teams refused the URL's signature (HTTP {status}): copy the trigger's "
                                   "URL again, with everything after the '?'"))
        elif status == 404:
            results.append((False, f"{env}: no such workflow (HTTP 404): it was deleted or turned off; create it "
                                   "again (README, Microsoft Teams) and update the URL"))
        elif status >= 500:
            results.append((False, f"{env}: the workflow service answered HTTP {status}; try again later"))
        else:
            results.append((True, f"ok: {env} reaches the workflow for {purpose} ({where})"))
    return results
