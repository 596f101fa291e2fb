"""THREATS.md B, SMTP smuggling (2023): only CRLF.CRLF ends DATA; no bare CR or LF goes on."""

from __future__ import annotations

import re

import pytest

from securemail.receive import Listener, start_relay_listener
from tests.receive.conftest import (
    LOOPBACK,
    Inbox,
    check_recipient,
    raw_session,
    run,
    sender_allowed,
    settings,
    with_listener,
)

# Ends of DATA that some servers accept and RFC 5321 §4.1.1.4 does not.
FALSE_ENDS = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "LF.CR": b"\n.\r",
}

SMUGGLED = (
    b"MAIL FROM:<ceo@agency.govt.nz>\r\n"
    b"RCPT TO:<victim@ministry.govt.nz>\r\n"
    b"DATA\r\n"
    b"From: ceo@agency.govt.nz\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"Pay the invoice.\r\n"
)

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


async def _relay(inbox: Inbox) -> Listener:
    return await start_relay_listener(
        settings(),
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=inbox,
    )


def _send_raw(inbox: Inbox, data: bytes) -> tuple[str, str]:
    """One transaction whose DATA is ``data`` then CRLF.CRLF, sent in one write; the reply
    after the dot and the reply to a NOOP sent after it (no reply may come in between)."""

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_session(listener.port)
        await client.send(
            b"MAIL FROM:<alice@agency.govt.nz>\r\nRCPT TO:<bob@ministry.govt.nz>\r\nDATA\r\n"
        )
        assert (await client.reply()).startswith("250")
        assert (await client.reply()).startswith("250")
        assert (await client.reply()).startswith("354")
        await client.send(data + b"\r\n.\r\n")
        final = await client.reply()
        noop = await client.command("NOOP")
        await client.close()
        return final, noop

    return run(with_listener(_relay(inbox), body))


@pytest.mark.parametrize("false_end", FALSE_ENDS.values(), ids=FALSE_ENDS.keys())
def test_false_end_of_data_stays_inside_one_message(false_end: bytes) -> None:
    """A smuggled second transaction after a false end of DATA is body text of the first."""
    inbox = Inbox()
    data = b"Subject: first\r\n\r\nhello" + false_end + SMUGGLED
    assert _send_raw(inbox, data) == ("250 2.0.0 Queued", "250 OK")
    (received,) = inbox.messages
    assert received.recipients == ("bob@ministry.govt.nz",)
    assert b"MAIL FROM:<ceo@agency.govt.nz>" in received.body
    assert b"Pay the invoice." in received.body
    assert BARE.search(received.body) is None


def test_bare_cr_and_lf_become_crlf() -> None:
    """Bare CR and bare LF in the body are admitted as CRLF, so nothing relayed carries them."""
    inbox = Inbox()
    _send_raw(inbox, b"Subject: x\r\n\r\none\ntwo\rthree\r\r\nfour\n\nfive")
    body = inbox.messages[0].body
    assert body.endswith(b"Subject: x\r\n\r\none\r\ntwo\r\nthree\r\n\r\nfour\r\n\r\nfive\r\n")
    assert BARE.search(body) is None


def test_dot_stuffing_is_removed() -> None:
    """A dot-stuffed line (RFC 5321 §4.5.2) is admitted with its leading dot restored."""
    inbox = Inbox()
    _send_raw(inbox, b"Subject: x\r\n\r\n..\r\n..hidden")
    assert inbox.messages[0].body.endswith(b"\r\n.\r\n.hidden\r\n")


def test_crlf_dot_crlf_ends_data() -> None:
    """The real end, CRLF.CRLF, ends the message: the same smuggled bytes after it are a
    second transaction (the control case for the tests above)."""
    inbox = Inbox()
    first = (
        b"MAIL FROM:<alice@agency.govt.nz>\r\nRCPT TO:<bob@ministry.govt.nz>\r\nDATA\r\n"
        b"Subject: first\r\n\r\nhello\r\n.\r\n"
    )

    async def body(listener: Listener) -> list[str]:
        client = await raw_session(listener.port)
        await client.send(first + SMUGGLED + b".\r\n")
        replies = [await client.reply() for _ in range(8)]
        await client.close()
        return replies

    replies = run(with_listener(_relay(inbox), body))
    assert [reply[:3] for reply in replies] == ["250", "250", "354", "250"] * 2
    assert [m.recipients for m in inbox.messages] == [
        ("bob@ministry.govt.nz",),
        ("victim@ministry.govt.nz",),
    ]
