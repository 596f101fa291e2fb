"""The console's conformance page in Chromium: no axe violations, the regression alert read
out first, and a run's report page reached by its link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from securemail.conformance.history import ConformanceHistory
from securemail.conformance.report import Finding, report_document
from tests.web.browser.conftest import Site
from tests.web.browser.test_accessibility import check

GOOD = [Finding("SM-RECV-2", "tampered", True, "kept"), Finding("SM-TLS-3", "door", True, "530")]
BROKEN = [Finding("SM-RECV-2", "tampered", False, "receipted: the gateway delivered it"), GOOD[1]]


def _record_runs(site: Site) -> None:
    """agency passed, then regressed on SM-RECV-2; gsp passed: in the provider's history."""
    history = ConformanceHistory.open(site.federation.config("provider").database)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        for member, findings, hours in (("agency", GOOD, 2), ("agency", BROKEN, 1),
                                        ("gsp", GOOD, 0)):  # fmt: skip
            at = now - timedelta(hours=hours)
            document = report_document(tester="conformance", member=member,
                                       target="127.0.0.1:25", started=at, finished=at,
                                       findings=findings, cases=[])  # fmt: skip
            history.record(document, b"signature")
    finally:
        history.close()


def test_conformance_page_is_accessible_and_alerts_the_regression(
    site: Site, operator_page: Page
) -> None:
    """The page and a report page have no WCAG 2.1 AA violations; the alert names the member
    and the requirement that regressed; the console navigation links the page."""
    _record_runs(site)
    page = operator_page
    page.goto(f"{site.origin}/console/")
    page.get_by_role("navigation", name="Operator console").get_by_role(
        "link", name="Conformance"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Conformance")
    expect(page.get_by_role("alert")).to_contain_text("agency's gateway")
    expect(page.get_by_role("alert")).to_contain_text("SM-RECV-2")
    check(page, "console-conformance")
    page.get_by_role("link", name="Report of agency").click()
    expect(page.get_by_role("row", name="SM-RECV-2")).to_contain_text("fail")
    check(page)
