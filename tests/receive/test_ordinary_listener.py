"""The ordinary listener: any mail from the Internet for our domains; TLS offered, not required."""

from __future__ import annotations

from typing import Any

import pytest

from securemail.receive import Listener, start_ordinary_listener
from tests.receive.conftest import (
    PLAIN_MESSAGE,
    SMIME_MESSAGE,
    Inbox,
    RawClient,
    Tls,
    raw_session,
    raw_tls_session,
    run,
    send_data,
    served,
    settings,
    smtp_client,
    with_listener,
)
from tests.receive.test_open_relay import RELAY_TRICKS
from tests.receive.test_smuggling import FALSE_ENDS, SMUGGLED

FOR_US = (
    b"From: someone@example.com\r\n"
    b"To: bob@agency.govt.nz\r\n"
    b"Subject: Hello from outside\r\n"
    b"\r\n"
    b"Kia ora.\r\n"
)


async def _ordinary(inbox: Inbox, tls: Tls | None = None, **limits: Any) -> Listener:
    context = None if tls is None else tls.server()
    return await start_ordinary_listener(settings(context, **limits), served=served, admit=inbox)


async def _transaction(client: RawClient, message: bytes, rcpt: str = "bob@agency.govt.nz") -> str:
    assert (await client.command("MAIL FROM:<someone@example.com>")).startswith("250")
    assert (await client.command(f"RCPT TO:<{rcpt}>")).startswith("250")
    return await send_data(client, message)


def test_plain_mail_without_tls_is_admitted(tls: Tls) -> None:
    """A plain message in clear from any sender to our domain is admitted as ordinary mail."""
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_session(listener.port)
        ehlo = await client.command("EHLO client.example.com")
        reply = await _transaction(client, FOR_US)
        await client.close()
        return ehlo, reply

    ehlo, reply = run(with_listener(_ordinary(inbox, tls), body))
    assert "STARTTLS" in ehlo and "AUTH" not in ehlo
    assert reply == "250 2.0.0 Queued"
    (received,) = inbox.messages
    assert received.listener == "ordinary"
    assert received.mail_from == "someone@example.com"
    assert received.recipients == ("bob@agency.govt.nz",)
    assert not received.tls and received.tls_version is None and received.auth_user is None
    assert received.body.startswith(b"Received: from client.example.com ([127.0.0.1])\r\n")
    assert received.body.endswith(FOR_US)


def test_starttls_is_offered_and_used(tls: Tls) -> None:
    """A client that starts TLS sends over it, and the admitted message records TLS."""
    inbox = Inbox()

    async def body(listener: Listener) -> None:
        client = await smtp_client(listener.port, tls)
        await client.sendmail("someone@example.com", ["bob@agency.govt.nz"], FOR_US)
        await client.quit()

    run(with_listener(_ordinary(inbox, tls), body))
    (received,) = inbox.messages
    assert received.tls and received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert b"with ESMTPS;" in received.body


def test_without_a_tls_context_starttls_is_not_offered() -> None:
    """A listener started without TLS settings takes plain mail and does not offer STARTTLS."""
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[str, str]:
        client = await RawClient.connect(listener.port)
        await client.reply()
        ehlo = await client.command("EHLO client.example.com")
        reply = await _transaction(client, PLAIN_MESSAGE)
        await client.close()
        return ehlo, reply

    ehlo, reply = run(with_listener(_ordinary(inbox), body))
    assert "STARTTLS" not in ehlo
    assert reply.startswith("250 ")


def test_smime_content_is_admitted_too(tls: Tls) -> None:
    """An S/MIME message is taken like any other: the content rule is the peer port's alone."""
    inbox = Inbox()

    async def body(listener: Listener) -> str:
        client = await raw_tls_session(listener.port, tls)
        reply = await _transaction(client, SMIME_MESSAGE)
        await client.close()
        return reply

    assert run(with_listener(_ordinary(inbox, tls), body)).startswith("250 ")
    assert inbox.messages[0].listener == "ordinary"


@pytest.mark.parametrize("argument", RELAY_TRICKS.values(), ids=RELAY_TRICKS.keys())
def test_relay_tricks_are_refused(argument: str) -> None:
    """Each routing trick, and any domain we do not serve, gets 550 5.7.1; nothing is taken."""
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_session(listener.port)
        assert (await client.command("MAIL FROM:<someone@example.com>")).startswith("250")
        reply = await client.command(f"RCPT TO:{argument}")
        data = await client.command("DATA")
        await client.close()
        return reply, data

    reply, data = run(with_listener(_ordinary(inbox), body))
    assert reply.startswith("550 5.7.1 ")
    assert data.startswith("503 ")
    assert inbox.messages == []


def test_limits_apply(tls: Tls) -> None:
    """The recipient limit (452 4.5.3), the size limit (552 5.3.4) and the hop limit
    (554 5.4.6) hold on the ordinary port as on the others."""
    inbox = Inbox()
    hops = b"".join(b"Received: from hop.example by hop.example; x\r\n" for _ in range(31))

    async def body(listener: Listener) -> tuple[str, str, str]:
        client = await raw_session(listener.port)
        assert (await client.command("MAIL FROM:<someone@example.com>")).startswith("250")
        assert (await client.command("RCPT TO:<a@agency.govt.nz>")).startswith("250")
        assert (await client.command("RCPT TO:<b@agency.govt.nz>")).startswith("250")
        third = await client.command("RCPT TO:<c@agency.govt.nz>")
        too_big = await send_data(client, b"Subject: x\r\n\r\n" + (b"y" * 70 + b"\r\n") * 40)
        loop = await _transaction(client, hops + b"\r\nbody\r\n")
        await client.close()
        return third, too_big, loop

    third, too_big, loop = run(
        with_listener(_ordinary(inbox, max_recipients=2, max_message_size=2048), body)
    )
    assert third.startswith("452 4.5.3 ")
    assert too_big.startswith("552 5.3.4 ")
    assert loop.startswith("554 5.4.6 ")
    assert inbox.messages == []


@pytest.mark.parametrize("false_end", FALSE_ENDS.values(), ids=FALSE_ENDS.keys())
def test_smuggled_transaction_stays_inside_one_message(false_end: bytes) -> None:
    """THREATS.md B: a false end of DATA cannot start a second transaction from outside."""
    inbox = Inbox()
    data = b"Subject: first\r\n\r\nhello" + false_end + SMUGGLED + b"\r\n.\r\n"

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_session(listener.port)
        await client.send(b"MAIL FROM:<someone@example.com>\r\nRCPT TO:<bob@agency.govt.nz>\r\n")
        assert (await client.reply()).startswith("250")
        assert (await client.reply()).startswith("250")
        assert (await client.command("DATA")).startswith("354")
        await client.send(data)
        final = await client.reply()
        noop = await client.command("NOOP")
        await client.close()
        return final, noop

    assert run(with_listener(_ordinary(inbox), body)) == ("250 2.0.0 Queued", "250 OK")
    (received,) = inbox.messages
    assert received.recipients == ("bob@agency.govt.nz",)
    assert b"Pay the invoice." in received.body
