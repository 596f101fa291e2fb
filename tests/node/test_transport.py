"""THREATS.md C on a real node: the sending gateway never sends in plaintext, and defers.

In each case an impostor stands on the port the signed directory lists for the provider's
gateway (where the real provider node would listen): a server without STARTTLS, one with a
certificate from another CA, and one with a federation certificate that is not the pinned
key. The agency node must defer the message without saying MAIL or DATA to any of them.
A real-keyed endpoint that refuses the recipient makes the message bounce with one
headers-only failure notice to the agency sender.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from securemail.demo.exchange import Script, submit
from securemail.queue import Direction, Entry, QueueStore, State
from tests.node.conftest import WAIT, Federation, running
from tests.relay.loopback import Recorder, make_tls_pki

NOW = datetime.now(UTC)
SCRIPT = Script(
    "transport",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "[IN-CONFIDENCE] Transport",
)
BODY_TEXT = b"This is demo message"


class Wiretap(SMTP):
    """aiosmtpd's server, also keeping every byte a client sends (to prove what was said)."""

    def __init__(self, handler: Recorder, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = handler

    def data_received(self, data: bytes) -> None:
        self.recorder.raw.extend(data)
        super().data_received(data)


@asynccontextmanager
async def impostor(port: int, handler: Recorder, tls: ssl.SSLContext | None) -> AsyncIterator[None]:
    """An SMTP server on ``port`` (the provider's listed endpoint) until the block ends."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Wiretap(handler, tls_context=tls, hostname="provider.impostor.test"),
        "127.0.0.1",
        port,
    )
    try:
        yield
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


def server_tls(federation: Federation, member: str) -> ssl.SSLContext:
    """A server context presenting ``member``'s own TLS certificate and key."""
    folder = federation.root / member
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(
        folder / "certs" / "tls.pem",
        folder / "keys" / "tls.key",
        password=(federation.root / "passphrase.txt").read_bytes().rstrip(b"\r\n"),
    )
    return context


def outbound(federation: Federation) -> list[Entry]:
    store = QueueStore.open(federation.config("agency").database)
    try:
        return list(store.list(direction=Direction.OUTBOUND))
    finally:
        store.close()


async def first_outcome(federation: Federation) -> Entry:
    """The agency's outbound entry once its first attempt is recorded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        done = [e for e in await asyncio.to_thread(outbound, federation) if e.attempts > 0]
        if done:
            return done[0]
        await asyncio.sleep(0.1)
    raise AssertionError("the agency node made no attempt")


def attempt_against(federation: Federation, handler: Recorder, tls: ssl.SSLContext | None) -> Entry:
    """Submit to the agency with the impostor on the provider's port; the entry after one try."""

    async def scenario() -> Entry:
        port = federation.nodes["provider"].peer_port
        async with impostor(port, handler, tls), running(federation, "agency"):
            reply = await submit(federation.nodes["agency"], SCRIPT, SCRIPT.message(1, NOW))
            assert reply.startswith("250"), reply
            return await first_outcome(federation)

    return asyncio.run(scenario())


def assert_deferred_unsent(entry: Entry, handler: Recorder, reason: str) -> None:
    assert entry.state is State.DEFERRED
    assert entry.reason == reason, (entry.reason, entry.last_reply)
    assert entry.next_attempt_at is not None
    assert handler.received == []
    assert b"MAIL FROM" not in handler.raw.upper()
    assert b"RCPT" not in handler.raw.upper()
    assert BODY_TEXT not in handler.raw


def test_endpoint_without_starttls_is_never_sent_plaintext(federation: Federation) -> None:
    """A peer endpoint that offers no STARTTLS gets no MAIL or DATA; the entry is deferred."""
    handler = Recorder()
    entry = attempt_against(federation, handler, tls=None)
    assert_deferred_unsent(entry, handler, "tls-unavailable")
    assert b"EHLO" in handler.raw.upper()  # it did connect: the refusal was ours


def test_certificate_from_another_ca_is_refused(federation: Federation, tmp_path: Path) -> None:
    """A peer whose certificate does not chain to the federation CA is deferred (tls-failed)."""
    pki = make_tls_pki(tmp_path)
    handler = Recorder()
    entry = attempt_against(federation, handler, tls=pki.context(pki.stranger))
    assert_deferred_unsent(entry, handler, "tls-failed")


def test_federation_certificate_with_another_key_is_refused(federation: Federation) -> None:
    """A member's valid certificate at the provider's endpoint fails the pin: deferred."""
    handler = Recorder()
    entry = attempt_against(federation, handler, tls=server_tls(federation, "gsp"))
    assert_deferred_unsent(entry, handler, "tls-pin-mismatch")


def test_recipient_refused_by_peer_bounces_with_one_headers_only_notice(
    federation: Federation,
) -> None:
    """A 5xx to RCPT bounces the message; the sender gets one notice without the body."""
    handler = Recorder(rcpt_replies={SCRIPT.to[0]: "550 5.1.1 No such mailbox"})
    sender_box = federation.nodes["agency"].mailbox(SCRIPT.mail_from) / "new"

    async def scenario() -> tuple[Entry, list[bytes]]:
        tls = server_tls(federation, "provider")
        port = federation.nodes["provider"].peer_port
        async with impostor(port, handler, tls), running(federation, "agency"):
            await submit(federation.nodes["agency"], SCRIPT, SCRIPT.message(2, NOW))
            entry = await first_outcome(federation)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while not (sender_box.is_dir() and any(sender_box.iterdir())):
                assert loop.time() < deadline, "no failure notice arrived"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # a second notice would show by now
            return entry, [p.read_bytes() for p in sender_box.iterdir()]

    entry, notices = asyncio.run(scenario())
    assert entry.state is State.BOUNCED
    assert entry.recipients[0].last_reply is not None
    assert entry.recipients[0].last_reply.startswith("550 5.1.1")
    assert handler.received == []  # no recipient accepted: no DATA
    assert len(notices) == 1
    notice = notices[0]
    assert b"Action: failed" in notice
    assert b"5.1.1" in notice
    assert b"text/rfc822-headers" in notice
    assert b"Subject: [IN-CONFIDENCE] Transport" in notice  # our own user's original header
    assert BODY_TEXT not in notice


def test_mixed_replies_settle_each_recipient_and_notify_only_the_refused(
    federation: Federation,
) -> None:
    """250, 450 and 550 in one transaction: delivered, still pending, bounced with a notice."""
    to = (
        "hemi.walker@securemail.provider.nz",
        "busy@securemail.provider.nz",
        "gone@securemail.provider.nz",
    )
    script = Script("mixed", "agency", SCRIPT.mail_from, to, "Mixed")
    handler = Recorder(
        rcpt_replies={to[1]: "450 4.2.1 Mailbox busy", to[2]: "550 5.1.1 No such mailbox"}
    )
    sender_box = federation.nodes["agency"].mailbox(SCRIPT.mail_from) / "new"

    async def scenario() -> tuple[Entry, list[bytes]]:
        tls = server_tls(federation, "provider")
        port = federation.nodes["provider"].peer_port
        async with impostor(port, handler, tls), running(federation, "agency"):
            await submit(federation.nodes["agency"], script, script.message(3, NOW))
            entry = await first_outcome(federation)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while not (sender_box.is_dir() and any(sender_box.iterdir())):
                assert loop.time() < deadline, "no failure notice arrived"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # a second notice would show by now
            return entry, [p.read_bytes() for p in sender_box.iterdir()]

    entry, notices = asyncio.run(scenario())
    assert entry.state is State.DEFERRED
    outcomes = {
        r.address: (r.disposition.value, (r.last_reply or "")[:3]) for r in entry.recipients
    }
    assert outcomes == {
        to[0]: ("delivered", "250"),
        to[1]: ("pending", "450"),
        to[2]: ("bounced", "550"),
    }
    assert [r.rcpt_tos for r in handler.received] == [(to[0],)]
    assert len(notices) == 1
    assert b"Final-Recipient: rfc822; gone@securemail.provider.nz" in notices[0]
    assert b"busy@" not in notices[0].split(b"text/rfc822-headers")[0]
