"""axe-core finds no WCAG 2.1 AA violation on the main pages; Tab starts at the skip link.

With SECUREMAIL_SCREENSHOTS=1 the same visits save docs/screenshots/<name>.png (1280x800,
and the mail list at 375x812 as a phone shows it), so CI never rewrites them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]  # no py.typed
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.web.browser.conftest import TO_HEMI, Site, new_context

SCREENSHOTS = Path(__file__).parents[3] / "docs" / "screenshots"
PHONE: ViewportSize = {"width": 375, "height": 812}
# axe-core's rule tags for WCAG 2.0 and 2.1, levels A and AA (the NZ standard's level)
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def check(page: Page, name: str | None = None) -> None:
    """No axe violations on ``page``; save it as ``name`` when screenshots are asked for."""
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA}})
    assert results.violations_count == 0, f"{page.url}\n{results.generate_report()}"
    if name is not None and os.environ.get("SECUREMAIL_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{name}.png")


def test_login_page_is_accessible_and_skip_link_comes_first(site: Site, browser: Browser) -> None:
    """The sign-in page has no violations, and the first Tab stop is "Skip to main content"."""
    with new_context(browser) as context:
        page = context.new_page()
        page.goto(f"{site.origin}/login")
        check(page, "login")
        page.keyboard.press("Tab")
        expect(page.locator(":focus")).to_have_text("Skip to main content")
        page.keyboard.press("Enter")
        expect(page.locator(":focus")).to_have_id("main")


def test_mail_pages_are_accessible(site: Site, hemi_page: Page, browser: Browser) -> None:
    """The mail list, a verified message with its panel, compose and account pages (and the
    list on a phone-sized screen) have no violations."""
    site.agency_writes_to_hemi()
    page = hemi_page
    page.goto(f"{site.origin}/mail")
    check(page, "mail-list")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to main content")
    page.get_by_role("link", name=TO_HEMI.subject).click()
    check(page, "message")
    page.goto(f"{site.origin}/mail/compose")
    check(page, "compose")
    page.goto(f"{site.origin}/account")
    check(page)
    page.set_viewport_size(PHONE)
    page.goto(f"{site.origin}/mail")
    check(page, "mail-list-phone")


@pytest.mark.parametrize("path", ["/console/", "/console/queue", "/console/directory"])
def test_console_pages_are_accessible(site: Site, operator_page: Page, path: str) -> None:
    """The operator console's status, queue and directory pages have no violations."""
    operator_page.goto(f"{site.origin}{path}")
    check(operator_page, "console-queue" if path == "/console/queue" else None)
