"""The dashboard in real headless Chromium: counts match the audit, a lead's timeline opens from the list,
a manager reverts a reassignment (audit and the emulated CRM show it), a viewer cannot."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from sidecar import jobs
from sidecar.audit import StepAction
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow
from tests.conftest import ROOT
from tests.e2e.visibility_fixture import Morning, serve_morning

webdriver = pytest.importorskip("selenium.webdriver")
By = pytest.importorskip("selenium.webdriver.common.by").By
WebDriverWait = pytest.importorskip("selenium.webdriver.support.wait").WebDriverWait
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = ROOT / "artifacts" / "screenshots"
pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian chromium and chromium-driver (.ci/run installs them)")


@pytest.fixture(scope="module")
def morning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Morning]:
    yield from serve_morning(tmp_path_factory.mktemp("browser"))


@pytest.fixture
def browser() -> Iterator[object]:
    profile = tempfile.mkdtemp(prefix="sidecar-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--window-size=1366,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.implicitly_wait(10)  # find_element waits for the element of a page still loading
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def login(driver: object, url: str, token: str) -> None:
    driver.get(f"{url}/dashboard/")  # type: ignore[attr-defined]
    assert driver.current_url.endswith("/dashboard/login")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "login").click()  # type: ignore[attr-defined]
    # A click returns before the next page loads: wait (bounded) for the browser to land on the overview.
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/dashboard/"))


def absent(driver: object, element_id: str) -> bool:
    """No such element on the loaded page (without the implicit wait a missing element would cost)."""
    driver.implicitly_wait(0)  # type: ignore[attr-defined]
    try:
        return driver.find_elements(By.ID, element_id) == []  # type: ignore[attr-defined]
    finally:
        driver.implicitly_wait(10)  # type: ignore[attr-defined]


def text(driver: object, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)  # type: ignore[attr-defined]


def test_overview_matches_the_audit_and_a_lead_opens_its_timeline(morning: Morning, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    login(browser, morning.url, "demo-viewer-token")
    with transaction(morning.demo.sessions) as session:
        rows = list(session.scalars(select(AuditRow)))
    breaches = [row for row in rows if row.kind == "sla_breach"]
    assert text(browser, "n-breaches-week") == str(len(breaches)) == "3"
    assert text(browser, "n-breaches-today") == "3"
    assert text(browser, "n-reassigned") == str(sum(row.action == StepAction.REASSIGN for row in rows)) == "2"
    assert text(browser, "n-reverted") == "0"
    assert text(browser, "n-overdue") == "1" and text(browser, "n-waiting") == "1"
    assert "US-East 3" in text(browser, "week-market") and "paid_social 3" in text(browser, "week-source")
    browser.save_screenshot(str(SHOTS / "overview.png"))  # type: ignore[attr-defined]

    assert "Aisha Al-Mansoori" in text(browser, "overdue")
    browser.find_element(By.LINK_TEXT, "Leads").click()  # type: ignore[attr-defined]
    browser.find_element(By.LINK_TEXT, "Aisha Al-Mansoori").click()  # type: ignore[attr-defined]
    WebDriverWait(browser, 10).until(lambda d: "/dashboard/leads/salesforce/" in d.current_url)
    assert browser.current_url.endswith(f"/dashboard/leads/salesforce/{morning.lead_id('Aisha Al-Mansoori')}")  # type: ignore[attr-defined]
    timeline = text(browser, "timeline")
    for words in ("created", "clock started", "sla breach imminent", "sla breach auto reassign",
                  "change owner", "done", "sla.reassign"):
        assert words in timeline
    assert "beat new.paid_social (1h): as specific (1) but later in the file" in text(browser, "explain")
    assert absent(browser, "revert")
    browser.save_screenshot(str(SHOTS / "lead.png"))  # type: ignore[attr-defined]

    browser.find_element(By.LINK_TEXT, "Charts").click()  # type: ignore[attr-defined]
    figures = browser.find_elements(By.CSS_SELECTOR, "svg.chart")  # type: ignore[attr-defined]
    assert [figure.get_attribute("aria-label").split(" (")[0] for figure in figures] == [
        "Breaches per day by market", "Breaches per day by source", "Response time against the SLA window",
        "SLA hit rate by team", "Response speed vs qualification and booking"]
    browser.save_screenshot(str(SHOTS / "charts.png"))  # type: ignore[attr-defined]


def test_a_viewer_cannot_revert_and_a_manager_can(morning: Morning, browser: object) -> None:
    aisha = morning.lead_id("Aisha Al-Mansoori")
    page = f"{morning.url}/dashboard/leads/salesforce/{aisha}"
    login(browser, morning.url, "demo-viewer-token")
    browser.get(page)  # type: ignore[attr-defined]
    assert absent(browser, "revert")
    assert "You are a viewer" in text(browser, "actions")
    cookie = browser.get_cookie("sidecar_session")["value"]  # type: ignore[attr-defined]
    csrf = browser.find_element(By.NAME, "csrf").get_attribute("value")  # type: ignore[attr-defined]
    refused = requests.post(f"{page}/revert", data={"csrf": csrf, "reason": "x"},
                            cookies={"sidecar_session": cookie}, allow_redirects=False, timeout=10)
    assert refused.status_code == 403
    browser.delete_all_cookies()  # type: ignore[attr-defined]

    login(browser, morning.url, "demo-manager-token")
    browser.get(page)  # type: ignore[attr-defined]
    # Without the form's CSRF token the same session is refused.
    manager_cookie = browser.get_cookie("sidecar_session")["value"]  # type: ignore[attr-defined]
    assert requests.post(f"{page}/revert", data={"reason": "x"}, cookies={"sidecar_session": manager_cookie},
                         allow_redirects=False, timeout=10).status_code == 403
    with transaction(morning.demo.sessions) as session:
        last = session.scalars(select(AuditRow).where(AuditRow.action == StepAction.REASSIGN.value)
                               .order_by(AuditRow.id.desc())).first()
        assert last is not None
        original = str(last.details["from_owner"])
    browser.find_element(By.NAME, "reason").send_keys("rep was with a customer")  # type: ignore[attr-defined]
    browser.find_element(By.ID, "revert").click()  # type: ignore[attr-defined]
    WebDriverWait(browser, 10).until(lambda d: "done=" in d.current_url)
    assert text(browser, "flash").startswith(f"reverted: the lead goes back to {original}")
    assert absent(browser, "revert")
    with transaction(morning.demo.sessions) as session:
        revert = session.scalars(select(AuditRow).where(AuditRow.action == StepAction.REVERT.value)).one()
        assert (revert.actor, revert.details["reason"], revert.to_owner) == (
            "dashboard:manager", "rep was with a customer", original)
    jobs.dispatch(morning.demo.runtime, morning.demo.clock.now())
    assert morning.demo.drivers["salesforce"].owner_of(aisha) == original
    browser.get(f"{morning.url}/dashboard/")  # type: ignore[attr-defined]
    assert text(browser, "n-reverted") == "1"
