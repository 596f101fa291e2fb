"""THREATS.md E on submission: the From: header is one strict mailbox the account owns.

Each trick is sent by a logged-in Alice over a real session and must be refused at the end
of DATA with 553 5.7.1 and its own reason code in the log; nothing reaches Admit.
"""

from __future__ import annotations

import base64
import logging

import pytest

from securemail.receive import Listener
from tests.receive.conftest import Inbox, Tls, send_data
from tests.receive.test_submission_listener import ALICE, ALICE_ALIAS, logged_in, serve


def encoded_word(text: str) -> bytes:
    """``text`` as one RFC 2047 B-encoded word."""
    return b"=?utf-8?b?" + base64.b64encode(text.encode()) + b"?="


REST = b"To: bob@ministry.govt.nz\r\nSubject: Budget\r\n\r\nThe figures.\r\n"

TRICKS = [
    (
        "two From: fields",
        b"From: alice@agency.govt.nz\r\nFrom: boss@agency.govt.nz\r\n",
        "from-multiple",
    ),
    (
        "a Sender: field",
        b"From: alice@agency.govt.nz\r\nSender: boss@agency.govt.nz\r\n",
        "sender-present",
    ),
    ("a group", b"From: Team: alice@agency.govt.nz;\r\n", "from-group"),
    ("a mailbox list", b"From: alice@agency.govt.nz, boss@agency.govt.nz\r\n", "from-mailbox-list"),
    (
        "an encoded-word in the address",
        b"From: Alice <=?utf-8?q?alice=40agency=2Egovt=2Enz?=@agency.govt.nz>\r\n",
        "from-encoded-word",
    ),
    (
        "another address as display name",
        b'From: "boss@agency.govt.nz" <alice@agency.govt.nz>\r\n',
        "from-display-address",
    ),
    (
        "another address encoded in the display name",
        b"From: =?utf-8?q?boss=40agency=2Egovt=2Enz?= <alice@agency.govt.nz>\r\n",
        "from-display-address",
    ),
    (
        "a fullwidth at sign in the display name",
        b"From: " + encoded_word("boss\uff20agency.govt.nz") + b" <alice@agency.govt.nz>\r\n",
        "from-display-address",
    ),
    (
        "8-bit text without SMTPUTF8",
        "From: Alice <alicé@agency.govt.nz>\r\n".encode(),
        "from-non-ascii",
    ),
    ("no From: field", b"Reply-To: alice@agency.govt.nz\r\n", "from-missing"),
    ("a From: the account does not own", b"From: boss@agency.govt.nz\r\n", "from-not-owned"),
]


@pytest.mark.parametrize(("header", "reason"), [t[1:] for t in TRICKS], ids=[t[0] for t in TRICKS])
def test_from_trick_is_refused_with_its_reason(
    tls: Tls, caplog: pytest.LogCaptureFixture, header: bytes, reason: str
) -> None:
    """The trick gets 553 5.7.1 at the end of DATA, its reason is logged, Admit sees nothing."""
    inbox = Inbox()

    async def body(listener: Listener) -> str:
        client = await logged_in(listener.port, tls)
        assert (await client.command(f"MAIL FROM:<{ALICE}>")).startswith("250")
        assert (await client.command("RCPT TO:<bob@ministry.govt.nz>")).startswith("250")
        reply = await send_data(client, header + REST)
        await client.close()
        return reply

    caplog.set_level(logging.INFO, "securemail.receive")
    reply = serve(tls, body, inbox=inbox)
    assert reply.startswith("553 5.7.1 ")
    assert f"refused 553 {reason}:" in caplog.text
    assert inbox.messages == []


@pytest.mark.parametrize(
    "header",
    [
        b"From: alice@agency.govt.nz\r\n",
        b"From: Alice Smith <A.Smith@Agency.govt.nz>\r\n",
        b'From: "alice@agency.govt.nz" <alice@agency.govt.nz>\r\n',
        b"From: =?utf-8?q?Al=C3=ADce?= (work) <alice@agency.govt.nz>\r\n",
    ],
    ids=["plain", "alias with display name", "own address as display name", "encoded name"],
)
def test_own_single_from_is_accepted(tls: Tls, header: bytes) -> None:
    """One From: mailbox of the account (any case, an alias, a decorated name) is admitted."""
    inbox = Inbox()

    async def body(listener: Listener) -> str:
        client = await logged_in(listener.port, tls)
        assert (await client.command(f"MAIL FROM:<{ALICE_ALIAS}>")).startswith("250")
        assert (await client.command("RCPT TO:<bob@ministry.govt.nz>")).startswith("250")
        reply = await send_data(client, header + REST)
        await client.close()
        return reply

    assert serve(tls, body, inbox=inbox).startswith("250")
    (received,) = inbox.messages
    assert received.auth_user == ALICE
    assert received.body.endswith(header + REST)
