"""The console's records requests in Chromium: reached only with the records role, no axe
violations, and a Privacy Act export made with script turned off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from securemail.access.store import WebStore
from securemail.access.tokens import WebAccess
from securemail.accounts.events import ACCOUNTS_LOG, AccountEvents
from securemail.demo.federation import OPERATOR
from securemail.records.export import past_exports
from securemail.storage.engine import connect
from tests.web.browser.conftest import HEMI, Site, new_context, sign_in
from tests.web.browser.test_accessibility import check


@pytest.fixture
def records_officer(site: Site) -> Iterator[None]:
    """The provider's operator holds the records role for the test, and not after."""
    config = site.federation.config("provider")
    engine = connect(config.database)
    events = AccountEvents(config.data_dir / ACCOUNTS_LOG)
    access = WebAccess(WebStore(engine), events, lambda: datetime.now(UTC))
    access.set_records_role(OPERATOR, True, by="cli:test")
    try:
        yield
    finally:
        access.set_records_role(OPERATOR, False, by="cli:test")
        engine.dispose()


def _signed_in(page: Page, site: Site) -> None:
    sign_in(page, site, OPERATOR)
    page.wait_for_url(f"{site.origin}/mail")


def _export(page: Page, about: str) -> None:
    page.get_by_label("Privacy Act: everything about an address").check()
    page.get_by_label("Address or text").fill(about)
    page.get_by_role("button", name="Export").click()


def test_the_records_page_needs_the_role(site: Site, operator_page: Page) -> None:
    """An operator without the role sees no link to the page and is refused it."""
    operator_page.goto(f"{site.origin}/console/")
    navigation = operator_page.get_by_role("navigation", name="Operator console")
    expect(navigation.get_by_role("link", name="Records requests")).to_have_count(0)
    response = operator_page.goto(f"{site.origin}/console/records")
    assert response is not None and response.status == 403


def test_an_officer_exports_without_script_and_the_page_is_accessible(
    site: Site, browser: Browser, records_officer: None
) -> None:
    """Signed in after the grant, the officer reaches the page from the console navigation,
    exports Hemi's records with script off, and the pages have no WCAG 2.1 AA violations."""
    scriptless = browser.new_context(ignore_https_errors=True, java_script_enabled=False)
    try:
        page = scriptless.new_page()
        _signed_in(page, site)
        page.goto(f"{site.origin}/console/")
        page.get_by_role("navigation", name="Operator console").get_by_role(
            "link", name="Records requests"
        ).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Records requests")
        _export(page, HEMI)
        expect(page.get_by_role("status")).to_contain_text("Exported")
    finally:
        scriptless.close()
    with new_context(browser) as context:
        page = context.new_page()
        _signed_in(page, site)
        page.goto(f"{site.origin}/console/records")
        check(page, "console-records")
        _export(page, HEMI)
        expect(page.get_by_role("status")).to_contain_text("Exported")
        expect(page.get_by_role("table")).to_contain_text(f"console:{OPERATOR}")
        check(page)
    engine = connect(site.federation.config("provider").database)
    try:
        made = [e for e in past_exports(engine) if e.details["about"] == HEMI]
    finally:
        engine.dispose()
    exports = site.federation.config("provider").data_dir / "exports"
    assert len(made) == 2
    assert all(Path(e.details["destination"]).parent == exports for e in made)
