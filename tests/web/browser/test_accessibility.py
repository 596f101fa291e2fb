"""axe-core finds no WCAG 2.1 AA violation on the main pages; Tab starts at the skip link.

With SECUREMAIL_SCREENSHOTS=1 the same visits save docs/screenshots/<name>.png (1280x800,
and the mail list at 375x812 as a phone shows it), so CI never rewrites them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]  # no py.typed
from playwright.sync_api import Browser, FloatRect, Page, ViewportSize, expect

from tests.web.browser.conftest import TO_HEMI, Site, new_context
from tests.web.browser.test_browser import TO_HARBOUR

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
    """The mail list, a verified message with its panel, compose and account pages have no
    violations at 1280x800, and the page never scrolls sideways."""
    site.agency_writes_to_hemi()
    page = hemi_page
    page.goto(f"{site.origin}/mail")
    check(page, "mail-list")
    fits(page, 1280)
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to main content")
    page.get_by_role("link", name=TO_HEMI.subject).click()
    check(page, "message")
    fits(page, 1280)
    page.goto(f"{site.origin}/mail/compose")
    check(page, "compose")
    fits(page, 1280)
    page.goto(f"{site.origin}/account")
    check(page)


def fits(page: Page, width: int) -> None:
    """The page is no wider than the window: nothing scrolls sideways."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url} is {scroll} px wide in a {width} px window"


def in_view(page: Page, selector: str) -> FloatRect:
    """The box of the first ``selector`` on ``page``; it must lie inside the 375 px window."""
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)
    return box


def test_phone_pages_are_accessible_and_show_subject_sender_and_date(
    site: Site, hemi_page: Page
) -> None:
    """At 375x812 the inbox, a message and compose have no violations and no sideways
    scrolling; in the list each entry shows its subject first, then sender and date, all
    within the screen, and the subject link is at least 44 px tall."""
    site.agency_writes_to_hemi()
    page = hemi_page
    page.set_viewport_size(PHONE)
    page.goto(f"{site.origin}/mail")
    check(page, "mail-list-phone")
    fits(page, PHONE["width"])
    row = page.get_by_role("row").filter(has_text=TO_HEMI.subject)
    subject = row.get_by_role("link", name=TO_HEMI.subject).bounding_box()
    sender = row.locator("td.col-who").bounding_box()
    date = row.locator("td.col-date").bounding_box()
    assert subject and sender and date
    assert subject["height"] >= 44, subject
    assert subject["y"] < sender["y"] and subject["y"] < date["y"]
    for box in (subject, sender, date):
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, box
        assert box["y"] + box["height"] <= PHONE["height"], box
    expect(row.locator("td.col-date time")).to_be_visible()
    row.get_by_role("link", name=TO_HEMI.subject).click()
    check(page, "message-phone")
    fits(page, PHONE["width"])
    for selector in ("h1#subject", ".mail-header dd", "section.verification h2"):
        in_view(page, selector)
    page.goto(f"{site.origin}/mail/compose")
    check(page, "compose-phone")
    fits(page, PHONE["width"])
    for field in ("#to", "#cc", "#bcc", "#subject", "#body"):
        in_view(page, field)


@pytest.mark.parametrize("path", ["/console/", "/console/queue", "/console/directory"])
def test_console_pages_are_accessible(site: Site, operator_page: Page, path: str) -> None:
    """The operator console's status, queue and directory pages have no violations."""
    operator_page.goto(f"{site.origin}{path}")
    check(operator_page, "console-queue" if path == "/console/queue" else None)


def test_console_contacts_page_is_accessible(site: Site, operator_page: Page) -> None:
    """The Contacts page, with its verification form and the register, has no violations."""
    operator_page.goto(f"{site.origin}/console/contacts")
    assert operator_page.get_by_label("Purpose").is_visible()
    operator_page.get_by_label("Address", exact=True).fill("hemi@provider.example.nz")
    operator_page.get_by_label("Purpose").fill("benefit payments")
    operator_page.get_by_label("strong-auth").check()
    operator_page.get_by_role("button", name="Ask the holder to confirm").click()
    assert operator_page.get_by_role("cell", name="pending").is_visible()
    check(operator_page, "console-contacts")


def test_console_bulk_preview_is_accessible(site: Site, operator_page: Page) -> None:
    """The queue page's bulk form, the preview it leads to (a deferred entry ticked) and
    the page for an empty selection have no violations."""
    reply = site.send(TO_HARBOUR, TO_HARBOUR.message(9, datetime.now(UTC)))
    assert reply.startswith("250"), reply
    operator_page.goto(f"{site.origin}/console/queue")
    operator_page.get_by_role("button", name="Preview").click()
    expect(operator_page.get_by_role("heading", level=1)).to_have_text("Nothing selected")
    check(operator_page)
    operator_page.goto(f"{site.origin}/console/queue")
    operator_page.get_by_role("checkbox", name="Select entry").first.check()
    operator_page.get_by_role("button", name="Preview").click()
    expect(operator_page.get_by_role("heading", level=1)).to_have_text("Preview: hold")
    check(operator_page, "console-bulk-preview")
