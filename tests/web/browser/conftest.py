"""The demo federation's agency and provider running in a thread, and Chromium driving the web.

The nodes serve in their own event loop on a background thread for the whole module, so
Playwright's blocking API can drive Chromium from the test's thread; coroutines (submitting
mail over SMTP) are handed to that loop with :meth:`Site.run`. The gsp node is never
started, so mail for its members waits in the provider's queue (connection refused).

Hemi enrols TOTP before the nodes start and signs in through the browser once per module
(a TOTP code is accepted only once, RFC 6238 §5.2); the pages she saw on the way are kept
for the test that checks them, and her cookies are reused by every later page.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, StorageState, sync_playwright

from securemail.accounts import totp
from securemail.accounts.events import ACCOUNTS_LOG
from securemail.accounts.node import open_accounts
from securemail.demo.exchange import Script, find_delivered, submit, wait_for
from securemail.demo.federation import OPERATOR, Clients
from tests.conftest import require_tool
from tests.node.conftest import WAIT, Federation, Running, founded

__all__ = ["founded"]  # the module's federation, founded in tmp_path (tests/node/conftest.py)

T = TypeVar("T")
HEMI = "hemi.walker@securemail.provider.nz"
AROHA = "aroha.ngata@agency.govt.nz"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TO_HEMI = Script("agency to citizen", "agency", AROHA, (HEMI,), "Your benefit review")
UNVERIFIED_SUBJECT = "Your parcel is waiting"
UNVERIFIED = (
    b"From: Parcel Desk <desk@parcels.example>\r\n"
    b"To: hemi.walker@securemail.provider.nz\r\n"
    b"Subject: Your parcel is waiting\r\n"
    b"Date: Sun, 29 Nov 2026 09:00:00 +1300\r\n"
    b"Message-ID: <parcel-1@parcels.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Pay the customs fee to release it.\r\n"
)


class Site:
    """The running nodes (agency, provider) on a loop of their own, and how to reach them."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.nodes = Running(federation)

    @property
    def clients(self) -> Clients:
        clients = self.federation.nodes["provider"].clients
        assert clients is not None
        return clients

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.clients.web_port}"

    def run(self, work: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        """Run ``work`` on the nodes' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def start(self, *names: str) -> None:
        self.thread.start()
        for name in names:
            self.run(self.nodes.start(name))

    def stop(self) -> None:
        self.run(self.nodes.close(), timeout=2 * WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()

    def send(self, script: Script, message: bytes) -> str:
        """Submit over SMTP as ``script`` says; the reply text."""
        return self.run(submit(self.federation.nodes[script.node], script, message))

    def agency_writes_to_hemi(self) -> None:
        """The agency's mail server relays TO_HEMI once; it lands in hemi's Maildir."""
        mailbox = self.federation.nodes["provider"].mailbox(HEMI)
        message_id = Script.message_id(2, "agency.govt.nz")
        if find_delivered(mailbox, message_id) is not None:
            return  # an earlier test of this module sent it
        reply = self.send(TO_HEMI, TO_HEMI.message(2, datetime.now(UTC)))
        assert reply.startswith("250"), reply
        delivered = self.run(wait_for(mailbox, message_id, WAIT), timeout=WAIT + 5)
        assert delivered is not None, "the agency's mail did not reach hemi's Maildir"


@dataclass(frozen=True)
class SignIn:
    """What hemi's browser saw while signing in, and the cookies it ended with."""

    code_step: bool  # the password opened the TOTP step, not the mailbox
    landed: str  # the URL after the code
    state: StorageState  # Playwright storage state: her session cookie


def enrol_totp(federation: Federation, name: str) -> str:
    """Enrol TOTP for ``name`` as the account pages would; the secret."""
    config = federation.config("provider")
    with open_accounts(
        config.database,
        log_path=config.data_dir / ACCOUNTS_LOG,
        passphrase=federation.root.joinpath("passphrase.txt").read_bytes().strip(),
        domains=config.domains,
    ) as accounts:
        uri = accounts.service.totp_begin(name)
        secret = uri.split("secret=")[1].split("&")[0]
        accounts.service.totp_confirm(name, totp.code_at(secret, totp.time_step(datetime.now(UTC))))
    return secret


def plant_unverified(mailbox: Path) -> None:
    """Put a message that never passed a gateway straight into a Maildir."""
    for sub in ("tmp", "new", "cur"):
        (mailbox / sub).mkdir(parents=True, exist_ok=True)
    (mailbox / "new" / "1764000000.parcel.test").write_bytes(UNVERIFIED)


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_tool("chromium")


@pytest.fixture(scope="module")
def totp_secret(founded: Federation) -> str:
    return enrol_totp(founded, HEMI)


@pytest.fixture(scope="module")
def site(founded: Federation, totp_secret: str, chromium: str) -> Iterator[Site]:
    plant_unverified(founded.nodes["provider"].mailbox(HEMI))
    running = Site(founded)
    try:
        running.start("agency", "provider")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_context(browser: Browser, state: StorageState | None = None) -> BrowserContext:
    # The node's TLS certificate names the node, not 127.0.0.1, and is vouched for by the
    # test federation's own CA: tests only, Chromium is told to accept it.
    return browser.new_context(
        ignore_https_errors=True, storage_state=state, viewport={"width": 1280, "height": 800}
    )


def sign_in(page: Page, site: Site, name: str) -> None:
    """Fill in and send the password form."""
    page.goto(f"{site.origin}/login")
    page.get_by_label("Email address").fill(name)
    page.get_by_label("Password").fill(site.clients.passwords[name])
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def hemi(site: Site, browser: Browser, totp_secret: str) -> SignIn:
    """Hemi signs in with her password, then the code of the next time step (drift allowed)."""
    with new_context(browser) as context:
        page = context.new_page()
        sign_in(page, site, HEMI)
        code = page.get_by_label("6-digit code")
        code_step = code.is_visible()
        code.fill(totp.code_at(totp_secret, totp.time_step(datetime.now(UTC)) + 1))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        return SignIn(code_step, page.url, context.storage_state())


@pytest.fixture(scope="module")
def operator(site: Site, browser: Browser) -> StorageState:
    """The provider's operator, signed in with a password; the storage state."""
    with new_context(browser) as context:
        page = context.new_page()
        sign_in(page, site, OPERATOR)
        page.wait_for_url(f"{site.origin}/mail")
        return context.storage_state()


@pytest.fixture
def hemi_page(browser: Browser, hemi: SignIn) -> Iterator[Page]:
    with new_context(browser, hemi.state) as context:
        yield context.new_page()


@pytest.fixture
def operator_page(browser: Browser, operator: StorageState) -> Iterator[Page]:
    with new_context(browser, operator) as context:
        yield context.new_page()
