"""Webmail and console in Chromium against real nodes: TOTP login, the panel, receipts, CSRF.

The agency and the provider run on loopback (see conftest.py); every page is fetched over
the provider's HTTPS port exactly as a person's browser would.
"""

from __future__ import annotations

import imaplib
import ssl
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Browser, Page, expect

from securemail.demo.exchange import Script
from tests.node.conftest import WAIT
from tests.web.browser.conftest import (
    AROHA,
    TO_HEMI,
    UNVERIFIED_SUBJECT,
    SignIn,
    Site,
    new_context,
    sign_in,
)

NOW = datetime.now(UTC)
HARBOUR = "office@harbourbuilders.co.nz"  # served by the gsp node, which never starts here
MERE = "mere.tane@securemail.provider.nz"  # no TOTP: her client submits with her password
TO_HARBOUR = Script("citizen to business", "provider", MERE, (HARBOUR,), "Deck quote", login=True)
AGENCY_NAME = "Te Tari Examples (agency)"


def reload_until(page: Page, text: str, timeout: float = WAIT) -> None:
    """Reload ``page`` until its main region shows ``text`` (the pages do not poll)."""
    deadline = time.monotonic() + timeout
    while text not in (shown := page.locator("main").inner_text()):
        assert time.monotonic() < deadline, f"{text!r} never appeared on {page.url}: {shown}"
        page.wait_for_timeout(500)
        page.reload()


def test_totp_login_then_the_verified_message_and_its_panel(
    site: Site, hemi: SignIn, hemi_page: Page
) -> None:
    """Hemi's password opens the code step, the code opens her mail; the agency's message is
    listed and shown as verified, naming the agency; a message that bypassed the gateways
    says "Not verified"."""
    assert hemi.code_step and hemi.landed == f"{site.origin}/mail"
    site.agency_writes_to_hemi()
    page = hemi_page
    page.goto(f"{site.origin}/mail")
    verified = page.get_by_role("row").filter(has_text=TO_HEMI.subject)
    expect(verified.locator(".badge-verified")).to_have_text("Verified SecureMail")
    verified.get_by_role("link", name=TO_HEMI.subject).click()
    panel = page.locator("section.verification")
    expect(panel.get_by_role("heading", level=2)).to_have_text("Verified SecureMail")
    expect(panel.locator("dt:has-text('Signed by') + dd")).to_contain_text(AGENCY_NAME)
    expect(panel.locator("dt:has-text('Authenticated sender') + dd")).to_have_text(AROHA)
    page.goto(f"{site.origin}/mail")
    page.get_by_role("link", name=UNVERIFIED_SUBJECT).click()
    expect(panel.get_by_role("heading", level=2)).to_have_text("Not verified")
    expect(panel).not_to_contain_text("Signed by")


def test_composed_in_confidence_message_becomes_receipted(site: Site, hemi_page: Page) -> None:
    """An IN-CONFIDENCE message with a receipt request, sent from the compose form, opens in
    Sent with its timeline, which reaches "receipted" once the agency's receipt is back."""
    page = hemi_page
    page.goto(f"{site.origin}/mail/compose")
    page.get_by_label("To", exact=True).fill(AROHA)
    page.get_by_label("Subject", exact=True).fill("Documents for my benefit review")
    page.get_by_label("Classification", exact=True).select_option("IN-CONFIDENCE")
    page.get_by_label("Request a signed delivery receipt").check()
    page.get_by_label("Message", exact=True).fill("Kia ora, my documents are attached.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(f"{site.origin}/mail/sent?*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your message is on its way")
    expect(page.get_by_role("table")).to_contain_text(AROHA)
    page.get_by_role("link", name="Open your copy in Sent (full timeline)").click()
    panel = page.locator("section.verification")
    expect(panel.locator("dt:has-text('Receipt requested') + dd")).to_have_text("Yes")
    reload_until(page, "receipt: receipted")
    steps = panel.locator("ol.timeline").inner_text()
    assert "queued" in steps and "relayed" in steps and "receipted" in steps, steps
    expect(panel.get_by_role("link", name="Download the evidence bundle")).to_be_visible()


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    site: Site, hemi_page: Page
) -> None:
    """A delete posted with her session cookie and our Origin but no CSRF token is 403, and
    the message stays in her inbox."""
    page = hemi_page
    page.goto(f"{site.origin}/mail")
    link = page.get_by_role("link", name=UNVERIFIED_SUBJECT)
    query = parse_qs(urlparse(str(link.get_attribute("href"))).query)
    refused = page.request.post(
        f"{site.origin}/mail/delete",
        form={"folder": query["folder"][0], "key": query["key"][0]},
        headers={"Origin": site.origin},
        max_redirects=0,
    )
    assert refused.status == 403, refused.status
    with page.expect_navigation() as forged:  # a form with a wrong token (fetch: CSP blocks it)
        page.evaluate(
            """([folder, key]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = "/mail/delete";
                for (const [name, value] of Object.entries({folder, key, csrf: "not-the-token"})) {
                    const field = document.createElement("input");
                    Object.assign(field, {type: "hidden", name, value});
                    form.append(field);
                }
                document.body.append(form);
                form.submit();
            }""",
            [query["folder"][0], query["key"][0]],
        )
    assert forged.value is not None and forged.value.status == 403
    page.goto(f"{site.origin}/mail")
    expect(page.get_by_role("link", name=UNVERIFIED_SUBJECT)).to_be_visible()


def test_operator_holds_and_releases_a_deferred_entry(site: Site, operator_page: Page) -> None:
    """Mail for a member whose gateway is down waits deferred; the operator holds it from the
    console (state "held"), then releases it (history "released", no longer held)."""
    reply = site.send(TO_HARBOUR, TO_HARBOUR.message(3, NOW))
    assert reply.startswith("250"), reply
    message_id = Script.message_id(3, "securemail.provider.nz")
    page = operator_page
    page.goto(f"{site.origin}/console/queue")
    page.get_by_label("State").select_option("deferred")
    page.get_by_label("Sender, recipient or Message-ID contains").fill(message_id)
    page.get_by_role("button", name="Filter").click()
    reload_until(page, HARBOUR)
    page.get_by_role("row").filter(has_text=HARBOUR).get_by_role("link").click()
    facts = page.locator("dl.facts")
    expect(facts.locator("dt:has-text('State') + dd")).to_have_text("deferred")
    page.get_by_role("button", name="Hold entry").click()
    expect(facts.locator("dt:has-text('State') + dd")).to_have_text("held")
    page.get_by_role("button", name="Release entry").click()
    history = page.get_by_role("table").filter(has_text="History, oldest first")
    expect(history).to_contain_text("released")
    expect(facts.locator("dt:has-text('State') + dd")).not_to_have_text("held")


def test_operator_holds_entries_in_bulk_with_a_preview(site: Site, operator_page: Page) -> None:
    """The operator ticks a deferred entry on the queue page, previews "hold" (nothing
    changes yet), applies it from the preview, then releases it in bulk: all without
    script, through the CSRF-checked forms."""
    reply = site.send(TO_HARBOUR, TO_HARBOUR.message(4, NOW))
    assert reply.startswith("250"), reply
    message_id = Script.message_id(4, "securemail.provider.nz")
    page = operator_page
    page.goto(f"{site.origin}/console/queue?state=deferred&text={message_id}")
    reload_until(page, HARBOUR)
    row = page.get_by_role("row").filter(has_text=HARBOUR)
    entry_id = row.get_by_role("link").inner_text()
    row.get_by_role("checkbox", name=f"Select entry {entry_id}").check()
    page.get_by_label("Action").select_option("hold")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Preview: hold")
    expect(page.get_by_role("row").filter(has_text=entry_id)).to_contain_text("would hold")
    page.get_by_role("button", name="Hold this entry").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Done: hold")
    page.goto(f"{site.origin}/console/queue?state=held&text={message_id}")
    held = page.get_by_role("row").filter(has_text=entry_id)
    held.get_by_role("checkbox").check()
    page.get_by_label("Action").select_option("release")
    page.get_by_role("button", name="Apply to selected").click()
    expect(page.get_by_role("row").filter(has_text=entry_id)).to_contain_text("done")
    page.goto(f"{site.origin}/console/queue/{entry_id}")
    facts = page.locator("dl.facts")
    expect(facts.locator("dt:has-text('State') + dd")).not_to_have_text("held")


def test_webmail_sent_copy_is_in_the_sent_folder_an_imap_client_lists(
    site: Site, browser: Browser
) -> None:
    """Mere sends from the webmail; her mail program (IMAP over TLS) sees the folder marked
    \\Sent holding that very message: the webmail and the client share one Sent folder."""
    subject = "Question about my rates"
    with new_context(browser) as context:
        page = context.new_page()
        sign_in(page, site, MERE)
        page.wait_for_url(f"{site.origin}/mail")
        page.goto(f"{site.origin}/mail/compose")
        page.get_by_label("To", exact=True).fill(AROHA)
        page.get_by_label("Subject", exact=True).fill(subject)
        page.get_by_label("Message", exact=True).fill("Kia ora, a question about my rates.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_url(f"{site.origin}/mail/sent?*")
    tls = ssl.create_default_context(cafile=str(site.clients.ca))
    tls.check_hostname = False  # the node's certificate names the node, we dial 127.0.0.1
    with imaplib.IMAP4_SSL("127.0.0.1", site.clients.imap_tls_port, ssl_context=tls) as client:
        client.login(MERE, site.clients.passwords[MERE])
        typ, lines = client.list('""', "*")
        sent = [line for line in lines if isinstance(line, bytes) and b"\\Sent" in line]
        assert (len(sent) == 1 and sent[0].endswith(b'"Sent"')) or sent[0].endswith(b" Sent"), lines
        assert client.select("Sent")[0] == "OK"
        typ, found = client.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK" and found[0].split(), found
