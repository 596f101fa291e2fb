"""Delivery to the organisation's mail store over SMTP and LMTP: per-recipient, never lost."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiosmtpd.smtp import SMTP, Envelope, Session

from securemail.deliver import SmtpTarget
from securemail.replies import Reply
from tests.relay.loopback import WAIT, Recorder, TlsPki, closed_port, serving

BODY = b"Subject: hello\r\n\r\n.dot line\r\nbody\r\n"
RCPTS = ["a@org.example", "b@org.example", "c@org.example"]


def target(
    port: int, *, lmtp: bool = False, starttls: bool = False, cafile: str | None = None
) -> SmtpTarget:
    """The store at ``port``; with TLS by name ("localhost", as in its certificate)."""
    host = "localhost" if starttls else "127.0.0.1"
    return SmtpTarget(
        host, port, lmtp=lmtp, starttls=starttls, cafile=cafile, helo="gw.example", timeout=WAIT
    )


def run_delivery(handler: Recorder, *, lmtp: bool, recipients: list[str]) -> dict[str, Reply]:
    async def run() -> dict[str, Reply]:
        async with serving(handler, lmtp=lmtp) as port:
            return await target(port, lmtp=lmtp).deliver("s@x.example", recipients, BODY, "aa")

    return asyncio.run(run())


def test_lmtp_gives_each_recipient_its_own_final_reply() -> None:
    """After DATA an LMTP store answers per recipient; each answer is that recipient's outcome."""
    handler = Recorder(
        rcpt_replies={"c@org.example": "550 5.1.1 No such mailbox"},
        data_reply="250 2.0.0 a saved\r\n452 4.2.2 b is over quota",
    )
    results = run_delivery(handler, lmtp=True, recipients=RCPTS)
    assert results["a@org.example"].code == 250
    assert (results["b@org.example"].code, results["b@org.example"].status) == (452, "4.2.2")
    assert (results["c@org.example"].code, results["c@org.example"].status) == (550, "5.1.1")
    assert handler.received[0].content == BODY


def test_smtp_store_gets_the_body_byte_for_byte() -> None:
    """An SMTP store receives the exact body (dot lines unstuffed) and all recipients get 250."""
    handler = Recorder()
    results = run_delivery(handler, lmtp=False, recipients=RCPTS[:2])
    assert all(r.code == 250 for r in results.values())
    assert handler.received[0].content == BODY
    assert handler.received[0].rcpt_tos == tuple(RCPTS[:2])


def test_smtp_data_refusal_applies_to_all_accepted() -> None:
    """One final SMTP reply after DATA is every accepted recipient's outcome."""
    handler = Recorder(data_reply="554 5.6.0 Content refused")
    results = run_delivery(handler, lmtp=False, recipients=RCPTS[:2])
    assert {(r.code, r.status) for r in results.values()} == {(554, "5.6.0")}


def test_store_down_is_temporary_for_everyone() -> None:
    """Nothing listening: 4xx downstream-unavailable for every recipient, no exception."""
    results = asyncio.run(target(closed_port()).deliver("s@x.example", RCPTS, BODY, "aa"))
    assert set(results) == set(RCPTS)
    assert all(r.temporary and r.reason == "downstream-unavailable" for r in results.values())


def test_drop_after_data_is_temporary_for_everyone() -> None:
    """A store that drops the connection before answering DATA leaves every recipient 4xx."""
    handler = Recorder(drop_after_data=True)
    results = run_delivery(handler, lmtp=True, recipients=RCPTS[:2])
    assert all(r.temporary and r.reason == "downstream-unavailable" for r in results.values())


class PartialLmtp(Recorder):
    """An LMTP store that answers for the first recipient, then crashes."""

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        await server.push("250 2.0.0 first one saved")
        if isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
        return "250 never sent"


def test_lmtp_answers_received_before_a_crash_are_kept() -> None:
    """A 250 already given for one recipient stays 250 (no duplicate); the rest are 4xx."""
    results = run_delivery(PartialLmtp(), lmtp=True, recipients=RCPTS[:2])
    assert results["a@org.example"].code == 250
    assert results["b@org.example"].temporary


def test_starttls_to_the_store_verified_by_cafile(tls_pki: TlsPki) -> None:
    """With starttls on, the message goes over TLS verified against the configured CA."""
    handler = Recorder()

    async def run() -> dict[str, Reply]:
        async with serving(handler, tls=tls_pki.context(tls_pki.server), lmtp=True) as port:
            store = target(port, lmtp=True, starttls=True, cafile=tls_pki.cafile())
            return await store.deliver("s@x.example", RCPTS[:1], BODY, "aa")

    assert asyncio.run(run())["a@org.example"].code == 250
    assert handler.received[0].tls


def test_starttls_configured_but_not_offered_sends_nothing(tls_pki: TlsPki) -> None:
    """A store that does not offer STARTTLS when it is configured gets no envelope: 4xx."""
    handler = Recorder()

    async def run() -> dict[str, Reply]:
        async with serving(handler) as port:
            store = target(port, starttls=True, cafile=tls_pki.cafile())
            return await store.deliver("s@x.example", RCPTS[:1], BODY, "aa")

    assert asyncio.run(run())["a@org.example"].temporary
    assert b"MAIL" not in handler.raw


def test_store_certificate_from_another_ca_is_refused(tls_pki: TlsPki) -> None:
    """A store certificate that does not verify is a temporary failure, nothing delivered."""
    handler = Recorder()

    async def run() -> dict[str, Reply]:
        async with serving(handler, tls=tls_pki.context(tls_pki.stranger)) as port:
            store = target(port, starttls=True, cafile=tls_pki.cafile())
            return await store.deliver("s@x.example", RCPTS[:1], BODY, "aa")

    assert asyncio.run(run())["a@org.example"].temporary
    assert handler.received == []


@asynccontextmanager
async def injecting_server(tls: ssl.SSLContext, received: list[bytes]) -> AsyncIterator[int]:
    """A scripted SMTP server that appends a forged reply to its STARTTLS 220 (RFC 3207 §4.2)."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 store ready\r\n")
        while line := await reader.readline():
            received.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-store\r\n250 STARTTLS\r\n")
            elif verb == b"STAR":
                writer.write(b"220 go ahead\r\n554 5.7.0 injected before TLS\r\n")
                await writer.drain()
                await writer.start_tls(tls)
                continue
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                writer.write(b"250 2.0.0 stored\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


def test_reply_injected_before_tls_is_discarded(tls_pki: TlsPki) -> None:
    """A reply sent in plaintext after the STARTTLS 220 is never read as a TLS-protected reply."""
    received: list[bytes] = []

    async def run() -> dict[str, Reply]:
        async with injecting_server(tls_pki.context(tls_pki.server), received) as port:
            store = target(port, starttls=True, cafile=tls_pki.cafile())
            return await store.deliver("s@x.example", RCPTS[:1], BODY, "aa")

    reply = asyncio.run(run())["a@org.example"]
    assert reply.code == 250, reply  # the forged 554 would have ended the session
    assert b"RCPT TO:<a@org.example>\r\n" in received
