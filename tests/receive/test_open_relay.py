"""THREATS.md B: open relay attempts are refused on both listeners, before any policy runs."""

from __future__ import annotations

import pytest

from securemail.receive import Listener, start_peer_listener, start_relay_listener
from tests.receive.conftest import (
    LOOPBACK,
    Inbox,
    RawClient,
    Tls,
    check_recipient,
    raw_session,
    raw_tls_session,
    run,
    sender_allowed,
    served,
    settings,
    with_listener,
)

RELAY_TRICKS = {
    "percent hack": "<bob%gmail.com@agency.govt.nz>",
    "source route": "<@agency.govt.nz:bob@gmail.com>",
    "source route, two hops": "<@a.example,@agency.govt.nz:bob@gmail.com>",
    "quoted local part": '<"bob@gmail.com"@agency.govt.nz>',
    "quoted pair": r'<"bob\@gmail.com"@agency.govt.nz>',
    "bang path": "<gmail.com!bob@agency.govt.nz>",
    "address literal": "<bob@[192.0.2.1]>",
    "unknown domain": "<bob@gmail.com>",
}

MALFORMED = {
    "two @ signs": "<bob@agency.govt.nz@gmail.com>",
    "comment": "<bob(x)@agency.govt.nz>",
    "space in domain": "<bob@ agency.govt.nz>",
    "no domain": "<bob>",
}


async def _refusals(client: RawClient, arguments: list[str]) -> list[str]:
    """MAIL from our domain, each RCPT in turn, then DATA (which must find no recipient)."""
    assert (await client.command("MAIL FROM:<alice@agency.govt.nz>")).startswith("250")
    replies = [await client.command(f"RCPT TO:{argument}") for argument in arguments]
    replies.append(await client.command("DATA"))
    await client.close()
    return replies


async def _relay() -> Listener:
    return await start_relay_listener(
        settings(),
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=Inbox(),
    )


@pytest.mark.parametrize("argument", RELAY_TRICKS.values(), ids=RELAY_TRICKS.keys())
def test_relay_listener_refuses_relay_tricks(argument: str) -> None:
    """Each routing trick in RCPT gets 550 5.7.1 on the relay listener; nothing is taken."""

    async def body(listener: Listener) -> list[str]:
        return await _refusals(await raw_session(listener.port), [argument])

    reply, data = run(with_listener(_relay(), body))
    assert reply.startswith("550 5.7.1 ")
    assert data.startswith("503 ")


@pytest.mark.parametrize("argument", RELAY_TRICKS.values(), ids=RELAY_TRICKS.keys())
def test_peer_listener_refuses_relay_tricks(tls: Tls, argument: str) -> None:
    """Each routing trick in RCPT gets 550 5.7.1 on the peer listener too."""

    async def body(listener: Listener) -> list[str]:
        return await _refusals(await raw_tls_session(listener.port, tls), [argument])

    start = start_peer_listener(settings(tls.server()), served=served, admit=Inbox())
    reply, data = run(with_listener(start, body))
    assert reply.startswith("550 5.7.1 ")
    assert data.startswith("503 ")


@pytest.mark.parametrize("argument", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_addresses_are_refused(argument: str) -> None:
    """A path that is not a plain dot-atom@domain mailbox gets a 5xx, never 250."""

    async def body(listener: Listener) -> list[str]:
        return await _refusals(await raw_session(listener.port), [argument])

    reply, data = run(with_listener(_relay(), body))
    assert reply.startswith("5")
    assert data.startswith("503 ")


def test_non_ascii_address_without_smtputf8_is_refused() -> None:
    """A UTF-8 address without SMTPUTF8 (not offered) gets 553 5.6.7."""

    async def body(listener: Listener) -> str:
        client = await raw_session(listener.port)
        await client.command("MAIL FROM:<alice@agency.govt.nz>")
        await client.send("RCPT TO:<bøb@agency.govt.nz>\r\n".encode())
        reply = await client.reply()
        await client.close()
        return reply

    assert run(with_listener(_relay(), body)) == "553 5.6.7 Non-ASCII text requires SMTPUTF8"


def test_sender_tricks_are_refused() -> None:
    """A %-hack or source route in MAIL FROM is refused like one in RCPT TO."""

    async def body(listener: Listener) -> list[str]:
        client = await raw_session(listener.port)
        replies = [
            await client.command("MAIL FROM:<alice%gmail.com@agency.govt.nz>"),
            await client.command("MAIL FROM:<@gmail.com:alice@agency.govt.nz>"),
        ]
        await client.close()
        return replies

    assert run(with_listener(_relay(), body)) == [
        "550 5.7.1 Relay not permitted",
        "550 5.7.1 Relay not permitted",
    ]
