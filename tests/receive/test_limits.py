"""THREATS.md B: size, line, recipient, connection, time and hop limits, with RFC 5321 replies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from securemail.receive import Listener, start_relay_listener
from tests.receive.conftest import (
    LOOPBACK,
    PLAIN_MESSAGE,
    Inbox,
    RawClient,
    check_recipient,
    raw_session,
    run,
    send_data,
    sender_allowed,
    settings,
    with_listener,
)


async def _relay(inbox: Inbox, **limits: Any) -> Listener:
    return await start_relay_listener(
        settings(**limits),
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=inbox,
    )


async def _transaction(client: RawClient, message: bytes) -> str:
    assert (await client.command("MAIL FROM:<alice@agency.govt.nz>")).startswith("250")
    assert (await client.command("RCPT TO:<bob@ministry.govt.nz>")).startswith("250")
    return await send_data(client, message)


def _one_message(inbox: Inbox, message: bytes, **limits: Any) -> tuple[str, str]:
    """Send ``message`` then a small one in the same session: both DATA replies."""

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_session(listener.port)
        first = await _transaction(client, message)
        second = await _transaction(client, PLAIN_MESSAGE)
        await client.close()
        return first, second

    return run(with_listener(_relay(inbox, **limits), body))


def test_size_is_advertised_and_enforced_at_mail() -> None:
    """EHLO advertises SIZE with the limit; MAIL with a larger SIZE= gets 552 5.3.4."""

    async def body(listener: Listener) -> tuple[str, str]:
        client = await RawClient.connect(listener.port)
        await client.reply()
        ehlo = await client.command("EHLO client.agency.govt.nz")
        mail = await client.command("MAIL FROM:<alice@agency.govt.nz> SIZE=4097")
        await client.close()
        return ehlo, mail

    ehlo, mail = run(with_listener(_relay(Inbox(), max_message_size=4096), body))
    assert "250-SIZE 4096" in ehlo.splitlines()
    assert mail == "552 5.3.4 Message too big"


def test_oversized_message_is_refused_whole() -> None:
    """A message over the limit gets 552 5.3.4 after the final dot, nothing is admitted,
    and the session goes on."""
    inbox = Inbox()
    big = PLAIN_MESSAGE + (b"x" * 70 + b"\r\n") * 100
    first, second = _one_message(inbox, big, max_message_size=4096)
    assert first == "552 5.3.4 Message too big"
    assert second == "250 2.0.0 Queued"
    assert [m.body.endswith(PLAIN_MESSAGE) for m in inbox.messages] == [True]


def test_data_line_over_1000_octets_is_refused() -> None:
    """A DATA line over 1000 octets (RFC 5321 §4.5.3.1.6) refuses the message with 500 5.5.2."""
    inbox = Inbox()
    long_line = PLAIN_MESSAGE + b"y" * 1500 + b"\r\n"
    first, second = _one_message(inbox, long_line)
    assert first == "500 5.5.2 Line too long"
    assert second == "250 2.0.0 Queued"
    assert len(inbox.messages) == 1


def test_data_line_of_998_octets_is_taken() -> None:
    """The longest line RFC 5322 allows (998 octets and CRLF) is taken unchanged."""
    inbox = Inbox()
    line = b"z" * 998 + b"\r\n"
    first, _ = _one_message(inbox, PLAIN_MESSAGE + line)
    assert first == "250 2.0.0 Queued"
    assert inbox.messages[0].body.endswith(line)


def test_long_command_line_gets_500() -> None:
    """A command line over the limit gets 500 5.5.2, and the session goes on."""

    async def body(listener: Listener) -> list[str]:
        client = await raw_session(listener.port)
        replies = [
            await client.command("MAIL FROM:<" + "a" * 600 + "@agency.govt.nz>"),
            await client.command("NOOP " + "n" * 3000),
            await client.command("NOOP"),
        ]
        await client.close()
        return replies

    assert run(with_listener(_relay(Inbox()), body)) == [
        "500 5.5.2 Line too long",
        "500 5.5.2 Line too long",
        "250 OK",
    ]


def test_101st_recipient_gets_452() -> None:
    """RFC 5321 §4.5.3.1.10: recipients after the 100th get 452 4.5.3; the first 100 go."""
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[list[str], str]:
        client = await raw_session(listener.port)
        await client.command("MAIL FROM:<alice@agency.govt.nz>")
        replies = [await client.command(f"RCPT TO:<u{n}@ministry.govt.nz>") for n in range(101)]
        data = await send_data(client, PLAIN_MESSAGE)
        await client.close()
        return replies, data

    replies, data = run(with_listener(_relay(inbox), body))
    assert replies[:100] == ["250 2.1.5 OK"] * 100
    assert replies[100] == "452 4.5.3 Too many recipients"
    assert data == "250 2.0.0 Queued"
    assert len(inbox.messages[0].recipients) == 100


def test_connections_over_the_cap_get_421() -> None:
    """Past max_connections a new client gets 421 4.7.0 and is closed; a freed slot is reused."""

    async def body(listener: Listener) -> tuple[str, bytes, str]:
        first = await raw_session(listener.port)
        second = await raw_session(listener.port)
        third = await RawClient.connect(listener.port)
        refused, rest = await third.reply(), await third.reader.read()
        await first.command("QUIT")
        await first.close()
        greeting = await _greeting_when_free(listener.port)
        await second.close()
        await third.close()
        return refused, rest, greeting

    refused, rest, greeting = run(with_listener(_relay(Inbox(), max_connections=2), body))
    assert refused == "421 4.7.0 Too many connections, try again later"
    assert rest == b""
    assert greeting.startswith("220 ")


async def _greeting_when_free(port: int) -> str:
    """Connect until the server has noticed a freed slot (it does so asynchronously)."""
    while True:
        client = await RawClient.connect(port)
        greeting = await client.reply()
        await client.close()
        if greeting.startswith("220 "):
            return greeting
        await asyncio.sleep(0.05)


def test_idle_client_is_cut_off() -> None:
    """A client that sends nothing gets 421 4.4.2 after the timeout and is closed."""

    async def body(listener: Listener) -> tuple[str, bytes]:
        client = await raw_session(listener.port)
        reply = await client.reply()
        rest = await client.reader.read()
        await client.close()
        return reply, rest

    reply, rest = run(with_listener(_relay(Inbox(), timeout=0.3), body))
    assert reply == "421 4.4.2 Timeout, closing connection"
    assert rest == b""


def test_each_command_restarts_the_idle_timeout() -> None:
    """NOOPs keep a session past its timeout; after the last one it gets the full timeout."""

    async def body(listener: Listener) -> tuple[list[str], str, float]:
        client = await raw_session(listener.port)
        replies = []
        for _ in range(6):  # 0.9 s of commands, each within the 0.5 s timeout
            replies.append(await client.command("NOOP"))
            await asyncio.sleep(0.15)
        started = time.monotonic()
        reply = await client.reply()
        elapsed = time.monotonic() - started
        await client.close()
        return replies, reply, elapsed

    replies, reply, elapsed = run(with_listener(_relay(Inbox(), timeout=0.5), body))
    assert all(r.startswith("250") for r in replies), replies
    assert reply == "421 4.4.2 Timeout, closing connection"
    assert 0.3 < elapsed < 20


def test_slow_client_is_cut_off() -> None:
    """A client that trickles one byte at a time never completes a command and is cut off."""

    async def body(listener: Listener) -> tuple[str, float]:
        client = await raw_session(listener.port)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    client.writer.write(b"N")
                    await client.writer.drain()
                    await asyncio.sleep(0.05)

        task = asyncio.create_task(trickle())
        started = time.monotonic()
        reply = await client.reply()
        elapsed = time.monotonic() - started
        task.cancel()
        await client.close()
        return reply, elapsed

    reply, elapsed = run(with_listener(_relay(Inbox(), timeout=0.5), body))
    assert reply == "421 4.4.2 Timeout, closing connection"
    assert 0.4 < elapsed < 20


def _hops(count: int) -> bytes:
    received = b"".join(
        b"Received: from hop%d.example by hop%d.example; Sun, 29 Nov 2026 12:00:00 +0000\r\n"
        % (n, n + 1)
        for n in range(count)
    )
    return received + PLAIN_MESSAGE


def test_more_than_30_received_fields_is_a_loop() -> None:
    """A message that already passed more than 30 hops gets 554 5.4.6; 30 hops are fine."""
    inbox = Inbox()
    looping, fine = _one_message(inbox, _hops(31)), _one_message(inbox, _hops(30))
    assert looping == ("554 5.4.6 Mail loop detected", "250 2.0.0 Queued")
    assert fine == ("250 2.0.0 Queued", "250 2.0.0 Queued")
    assert len(inbox.messages) == 3
