"""A real loopback IMAP server (pymap) over Maildirs in tmp_path, with an in-test Authenticator.

The server runs on its own event loop in a thread, so the tests can drive it with the
blocking ``imaplib`` client and deliver with MaildirTarget as the node does.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from securemail.accounts.model import (
    Account,
    AccountReason,
    Denied,
    Granted,
    Mailbox,
    Service,
)
from securemail.deliver import MaildirTarget
from securemail.deliver.maildir import mailbox_path
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.imap import ImapLimits, ImapServer, start_imap
from tests.accounts.conftest import make_account
from tests.conftest import SEAL
from tests.relay.loopback import TlsPki, make_tls_pki

PASSWORD = "correct horse battery staple"
BOB = "bob@y.example"


def account(name: str, *aliases: str, quota: int | None = None, disabled: bool = False) -> Account:
    return make_account(name, *aliases, quota=quota, disabled=disabled)


@dataclass
class Accounts:
    """The Authenticator and Mailboxes contracts, in memory: enough for the IMAP layer."""

    accounts: dict[str, Account] = field(default_factory=dict)
    throttled: set[str] = field(default_factory=set)
    calls: list[tuple[str, Service, str]] = field(default_factory=list)

    async def login(
        self, name: str, secret: str, *, service: Service, source: str, totp: str | None = None
    ) -> Granted | Denied:
        self.calls.append((name, service, source))
        if source in self.throttled:
            return Denied(AccountReason.THROTTLED, retry_after=60.0)
        found = self.accounts.get(name.lower())
        if found is None or secret != PASSWORD:
            return Denied(AccountReason.BAD_CREDENTIALS)
        if found.disabled:
            return Denied(AccountReason.DISABLED)
        return Granted(found, "password")

    def mailbox_for(self, address: str) -> Mailbox | None:
        found = next((a for a in self.accounts.values() if a.owns(address)), None)
        return None if found is None else Mailbox(found.name, found.primary, found.quota)


@dataclass
class Imap:
    """The running server and what a test needs to reach and feed it."""

    server: ImapServer
    root: Path
    accounts: Accounts
    client_tls: ssl.SSLContext

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def tls_port(self) -> int:
        assert self.server.tls_port is not None
        return self.server.tls_port

    def plain(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        return client

    def logged_in(self, name: str = BOB) -> imaplib.IMAP4:
        client = self.plain()
        client.starttls(self.client_tls)
        client.login(name, PASSWORD)
        return client

    def deliver(self, rcpt: str, key: str, *, verified: bool, body: bytes | None = None) -> int:
        """Deliver as the inbound service does: $SecureMail only for verified mail."""
        target = MaildirTarget(self.root, accounts=self.accounts, seal=SEAL)
        keywords = frozenset({SECUREMAIL_KEYWORD}) if verified else frozenset()
        message = body or f"From: a@x.example\r\nSubject: {key}\r\n\r\nHello.\r\n".encode()
        results = asyncio.run(
            target.deliver("a@x.example", [rcpt], message, key, keywords=keywords)
        )
        return results[rcpt].code


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    return make_tls_pki(tmp_path_factory.mktemp("imap-tls"))


@pytest.fixture
def imap(request: pytest.FixtureRequest, tmp_path: Path, tls_pki: TlsPki) -> Iterator[Imap]:
    """An IMAP server on 127.0.0.1 (STARTTLS and implicit TLS) for bob, with alias robert.

    Parametrize it indirectly with :class:`ImapLimits` to change the server's limits.
    """
    limits = getattr(request, "param", ImapLimits())
    root = tmp_path / "mail"
    root.mkdir()
    accounts = Accounts()
    accounts.accounts[BOB] = account(BOB, "robert@y.example")
    accounts.accounts["eve@y.example"] = account("eve@y.example", disabled=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    start = start_imap(
        accounts,
        lambda primary: mailbox_path(root, primary),
        tls_pki.context(tls_pki.server),
        listen=("127.0.0.1", 0),
        tls_listen=("127.0.0.1", 0),
        limits=limits,
        seal=SEAL,
    )
    server = asyncio.run_coroutine_threadsafe(start, loop).result(10)
    client_tls = ssl.create_default_context(cadata=tls_pki.ca.certificate_pem().decode())
    client_tls.check_hostname = False  # the certificate names localhost; we dial 127.0.0.1
    try:
        yield Imap(server, root, accounts, client_tls)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
