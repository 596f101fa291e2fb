"""The submission listener: TLS before AUTH, AUTH before MAIL, RFC 4954 replies, owned senders."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiosmtplib
import pytest

from securemail.accounts import Account, AccountReason, Denied, Granted, Service
from securemail.receive import Listener, start_submission_listener
from tests.accounts.conftest import make_account
from tests.receive.conftest import (
    PLAIN_MESSAGE,
    SERVER_NAME,
    WAIT,
    Inbox,
    RawClient,
    Tls,
    check_recipient,
    raw_session,
    raw_tls_session,
    run,
    settings,
    smtp_client,
    with_listener,
)

ALICE = "alice@agency.govt.nz"
ALICE_ALIAS = "a.smith@agency.govt.nz"
ALICE_PASSWORD = "correct horse battery staple"
BOB = "bob@agency.govt.nz"  # TOTP enrolled: only his app password works for SMTP
BOB_PASSWORD, BOB_APP_PASSWORD = "bob account password", "bob-app-password"
CAROL = "carol@agency.govt.nz"  # disabled
INVALID = "535 5.7.8 Authentication credentials invalid"

T = TypeVar("T")


def account(name: str, *aliases: str, disabled: bool = False) -> Account:
    display = name.partition("@")[0].title()
    return make_account(name, *aliases, disabled=disabled, totp=name == BOB, display_name=display)


@dataclass
class Accounts:
    """An in-test Authenticator: fixed accounts, a throttle list, and every call kept.

    With ``release`` given, each login first waits for it in a worker thread (a slow hash).
    """

    throttled: set[str] = field(default_factory=set)
    error: Exception | None = None
    release: threading.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[tuple[str, Service, str]] = field(default_factory=list)

    async def login(
        self, name: str, secret: str, *, service: Service, source: str, totp: str | None = None
    ) -> Granted | Denied:
        self.calls.append((name, service, source))
        self.started.set()
        if self.release is not None:
            await asyncio.to_thread(self.release.wait, WAIT)
        if self.error is not None:
            raise self.error
        if name in self.throttled:
            return Denied(AccountReason.THROTTLED, retry_after=60.0)
        return self._check(name, secret)

    def _check(self, name: str, secret: str) -> Granted | Denied:
        if name == ALICE and secret == ALICE_PASSWORD:
            return Granted(account(ALICE, ALICE_ALIAS), "password")
        if name == BOB and secret == BOB_APP_PASSWORD:
            return Granted(account(BOB), "app-password")
        if name == BOB and secret == BOB_PASSWORD:
            return Denied(AccountReason.APP_PASSWORD_REQUIRED)
        if name == CAROL and secret == "carol password":
            return Denied(AccountReason.DISABLED)
        return Denied(AccountReason.BAD_CREDENTIALS)


def plain(user: str, password: str | bytes) -> str:
    """The AUTH PLAIN command for ``user`` (RFC 4616: empty authzid, NUL separators)."""
    secret = password if isinstance(password, bytes) else password.encode()
    return "AUTH PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0" + secret).decode()


async def start(
    tls: Tls, accounts: Accounts, inbox: Inbox, *, implicit_tls: bool = False
) -> Listener:
    return await start_submission_listener(
        settings(tls.server()),
        authenticator=accounts,
        check_recipient=check_recipient,
        admit=inbox,
        implicit_tls=implicit_tls,
    )


def serve(
    tls: Tls,
    body: Callable[[Listener], Awaitable[T]],
    accounts: Accounts | None = None,
    inbox: Inbox | None = None,
) -> T:
    """Run ``body`` against a STARTTLS submission listener."""
    return run(with_listener(start(tls, accounts or Accounts(), inbox or Inbox()), body))


async def logged_in(port: int, tls: Tls) -> RawClient:
    """A raw client after STARTTLS and a granted AUTH PLAIN as Alice."""
    client = await raw_tls_session(port, tls)
    assert (await client.command(plain(ALICE, ALICE_PASSWORD))).startswith("235 2.7.0")
    return client


def test_before_tls_there_is_no_auth_and_nothing_but_starttls(tls: Tls) -> None:
    """Before STARTTLS EHLO offers no AUTH, and AUTH and MAIL get 530 5.7.0; after it, AUTH."""

    async def body(listener: Listener) -> tuple[str, str, str, str]:
        client = await RawClient.connect(listener.port)
        await client.reply()
        ehlo = await client.command("EHLO client.example")
        auth = await client.command(plain(ALICE, ALICE_PASSWORD))
        mail = await client.command(f"MAIL FROM:<{ALICE}>")
        assert (await client.command("STARTTLS")).startswith("220")
        await client.start_tls(tls.client)
        after = await client.command("EHLO client.example")
        await client.close()
        return ehlo, auth, mail, after

    ehlo, auth, mail, after = serve(tls, body)
    assert "AUTH" not in ehlo and "250-STARTTLS" in ehlo
    assert auth.startswith("530 5.7.0") and mail.startswith("530 5.7.0")
    assert "250-AUTH LOGIN PLAIN" in after.splitlines()
    assert "STARTTLS" not in after


def test_good_message_reaches_admit_as_the_account(tls: Tls) -> None:
    """aiosmtplib logs in after STARTTLS and sends; Admit gets it with auth_user and ESMTPSA."""
    accounts, inbox = Accounts(), Inbox()

    async def body(listener: Listener) -> None:
        client = await smtp_client(listener.port, tls)
        await client.login(ALICE, ALICE_PASSWORD)
        await client.sendmail(ALICE, ["bob@ministry.govt.nz"], PLAIN_MESSAGE)
        await client.quit()

    serve(tls, body, accounts, inbox)
    (received,) = inbox.messages
    assert received.listener == "submission"
    assert received.auth_user == ALICE
    assert received.tls and received.tls_version is not None
    assert b" with ESMTPSA;\r\n" in received.body
    assert accounts.calls == [(ALICE, Service.SMTP, "127.0.0.1")]


def test_auth_login_is_checked_like_plain(tls: Tls) -> None:
    """AUTH LOGIN's two challenges reach the same check: right password 235, wrong one 535."""

    async def login(client: RawClient, password: str) -> str:
        assert (await client.command("AUTH LOGIN")).startswith("334 ")
        assert (await client.command(base64.b64encode(ALICE.encode()).decode())).startswith("334")
        return await client.command(base64.b64encode(password.encode()).decode())

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_tls_session(listener.port, tls)
        wrong = await login(client, "wrong")
        right = await login(client, ALICE_PASSWORD)
        await client.close()
        return wrong, right

    wrong, right = serve(tls, body)
    assert wrong == INVALID
    assert right == "235 2.7.0 Authentication successful"


def test_unknown_user_and_wrong_password_get_byte_identical_replies(
    tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown user, wrong password, disabled account, non-UTF-8 password: one 535 line on
    the wire; only the log tells them apart."""
    attempts = [
        plain("nobody@agency.govt.nz", ALICE_PASSWORD),
        plain(ALICE, "wrong password"),
        plain(CAROL, "carol password"),
        plain(ALICE, b"\xff\xfe"),
    ]

    async def body(listener: Listener) -> list[bytes]:
        client = await raw_tls_session(listener.port, tls)
        replies = []
        for command in attempts:
            await client.send(command.encode() + b"\r\n")
            replies.append(await client.reader.readline())
        await client.close()
        return replies

    caplog.set_level(logging.INFO, "securemail.receive")
    replies = serve(tls, body)
    assert replies == [INVALID.encode() + b"\r\n"] * len(attempts)
    assert "refused 535 bad-credentials: login as 'nobody@agency.govt.nz' refused" in caplog.text
    assert f"refused 535 account-disabled: login as '{CAROL}' refused" in caplog.text
    assert "is not UTF-8" in caplog.text


def test_throttled_login_is_a_temporary_failure(tls: Tls) -> None:
    """A throttled account or source gets 454 4.7.0, not 535: the client should try later."""

    async def body(listener: Listener) -> str:
        client = await raw_tls_session(listener.port, tls)
        reply = await client.command(plain(ALICE, ALICE_PASSWORD))
        await client.close()
        return reply

    reply = serve(tls, body, Accounts(throttled={ALICE}))
    assert reply == "454 4.7.0 Temporary authentication failure"


def test_account_password_where_an_app_password_is_required(tls: Tls) -> None:
    """Bob (TOTP enrolled) gets 534 5.7.9 for his account password; his app password works."""

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_tls_session(listener.port, tls)
        refused = await client.command(plain(BOB, BOB_PASSWORD))
        granted = await client.command(plain(BOB, BOB_APP_PASSWORD))
        await client.close()
        return refused, granted

    refused, granted = serve(tls, body)
    assert refused == "534 5.7.9 Please use an app password"
    assert granted.startswith("235 2.7.0")


def test_authenticator_failure_is_temporary_and_logged(
    tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    """An account store that raises gives 454 4.7.0 (never 235) and logs only the error type."""

    async def body(listener: Listener) -> str:
        client = await raw_tls_session(listener.port, tls)
        reply = await client.command(plain(ALICE, ALICE_PASSWORD))
        await client.close()
        return reply

    caplog.set_level(logging.INFO, "securemail.receive")
    reply = serve(tls, body, Accounts(error=RuntimeError("db password=hunter2")))
    assert reply == "454 4.7.0 Temporary authentication failure"
    assert "auth-unavailable: authenticator raised RuntimeError" in caplog.text
    assert "hunter2" not in caplog.text


def test_mail_before_auth_is_refused(tls: Tls) -> None:
    """After STARTTLS but without AUTH, MAIL gets 530 5.7.0 (RFC 4954 §6)."""

    async def body(listener: Listener) -> str:
        client = await raw_tls_session(listener.port, tls)
        reply = await client.command(f"MAIL FROM:<{ALICE}>")
        await client.close()
        return reply

    assert serve(tls, body) == "530 5.7.0 Authentication required"


def test_sender_must_be_an_address_of_the_account(
    tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    """MAIL FROM another address or <> gets 553 5.7.1; the account's alias is accepted."""

    async def body(listener: Listener) -> list[str]:
        client = await logged_in(listener.port, tls)
        replies = []
        for sender in (BOB, "", ALICE_ALIAS.upper()):
            replies.append(await client.command(f"MAIL FROM:<{sender}>"))
        await client.close()
        return replies

    caplog.set_level(logging.INFO, "securemail.receive")
    other, null, alias = serve(tls, body)
    assert other == "553 5.7.1 Sender address not yours"
    assert null == "553 5.7.1 Sender address required"
    assert alias == "250 2.1.0 OK"
    assert "refused 553 sender-not-owned" in caplog.text
    assert "refused 553 null-sender" in caplog.text


def test_recipients_pass_the_routing_check(tls: Tls) -> None:
    """A logged-in user cannot relay outside the federation: the same CheckRecipient refuses."""

    async def body(listener: Listener) -> tuple[str, str]:
        client = await logged_in(listener.port, tls)
        assert (await client.command(f"MAIL FROM:<{ALICE}>")).startswith("250")
        outside = await client.command("RCPT TO:<someone@gmail.com>")
        member = await client.command("RCPT TO:<bob@ministry.govt.nz>")
        await client.close()
        return outside, member

    outside, member = serve(tls, body)
    assert outside.startswith("550 5.7.1")
    assert member.startswith("250")


def test_implicit_tls_offers_and_accepts_auth(tls: Tls) -> None:
    """On the 465 listener TLS starts at connect; EHLO offers AUTH (no STARTTLS) and mail goes."""
    inbox = Inbox()

    async def body(listener: Listener) -> str:
        sock = socket.create_connection(("127.0.0.1", listener.port))
        sock.setblocking(False)
        client = aiosmtplib.SMTP(
            hostname=SERVER_NAME, sock=sock, use_tls=True, tls_context=tls.client, timeout=WAIT
        )
        await client.connect()
        ehlo = await client.ehlo()
        await client.login(ALICE, ALICE_PASSWORD)
        await client.sendmail(ALICE, ["bob@ministry.govt.nz"], PLAIN_MESSAGE)
        await client.quit()
        return ehlo.message

    ehlo = run(with_listener(start(tls, Accounts(), inbox, implicit_tls=True), body))
    assert "AUTH LOGIN PLAIN" in ehlo and "STARTTLS" not in ehlo
    (received,) = inbox.messages
    assert received.auth_user == ALICE
    assert received.tls and received.tls_version is not None
    assert b" with ESMTPSA;\r\n" in received.body


def test_implicit_tls_port_speaks_no_plaintext(tls: Tls) -> None:
    """A plaintext client on the 465 listener gets no greeting: the server waits for TLS."""

    async def body(listener: Listener) -> bytes:
        client = await RawClient.connect(listener.port)
        await client.send(b"EHLO client.example\r\n")
        answer = await asyncio.wait_for(client.reader.read(), WAIT)
        await client.close()
        return answer

    answer = run(with_listener(start(tls, Accounts(), Inbox(), implicit_tls=True), body))
    assert b"220" not in answer and b"AUTH" not in answer


def test_slow_login_does_not_block_other_sessions(tls: Tls) -> None:
    """While one login waits on a slow hash in a thread, another session is served."""
    release = threading.Event()
    accounts = Accounts(release=release)

    async def body(listener: Listener) -> tuple[str, str]:
        first = await raw_tls_session(listener.port, tls)
        login = asyncio.create_task(first.command(plain(ALICE, ALICE_PASSWORD)))
        await asyncio.wait_for(accounts.started.wait(), WAIT)
        second = await raw_session(listener.port)
        noop = await second.command("NOOP")
        await second.close()
        release.set()
        granted = await login
        await first.close()
        return noop, granted

    try:
        noop, granted = serve(tls, body, accounts)
    finally:
        release.set()  # never leave the worker thread waiting
    assert noop.startswith("250")
    assert granted.startswith("235 2.7.0")


def test_listener_needs_a_tls_context() -> None:
    """Without TLS, passwords would cross in clear: refused at start."""
    with pytest.raises(ValueError, match="TLS"):
        run(
            start_submission_listener(
                settings(None),
                authenticator=Accounts(),
                check_recipient=check_recipient,
                admit=Inbox(),
            )
        )
