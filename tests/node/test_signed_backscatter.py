"""THREATS.md K, signed backscatter: input nobody vouched for never makes us sign a word.

Replays the attack of issue 16 against the provider's peer listener (garbage S/MIME with a
member's address as the envelope sender and a phishing Subject; mutual TLS now keeps
anonymous hosts out before MAIL, tests/node/test_members_only.py, so here it comes over a
connection of another member, as from a compromised or careless gateway), then the
subtler cases: a verified message whose envelope sender its signer does not own, and a
genuine failure notice, which must quote only the signed routing fields.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from securemail.queue import Direction, State
from securemail.smime import ProtectOptions, SealedFor, protect
from tests.node.conftest import Federation, mailbox_files, running
from tests.node.test_inbound_refusals import (
    AGENCY_USER,
    HARBOUR_USER,
    NOW,
    encryption_certificate,
    entries,
    final_inbound,
    letter,
    quarantine_reason,
    send_to_peer,
    signer,
    wait_until,
)

MINISTER = "minister@agency.govt.nz"
PHISH = "Your SecureMail password expires today: confirm it at https://phish.example/"
NOBODY = "nobody@securemail.provider.nz"  # no such account on the provider: 550 5.1.1


def garbage_smime() -> bytes:
    """What anyone can send: an S/MIME-looking message whose content is random bytes."""
    body = base64.encodebytes(os.urandom(600)).replace(b"\n", b"\r\n")
    return (
        f"From: {MINISTER}\r\nTo: hemi.walker@securemail.provider.nz\r\nSubject: {PHISH}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + body


def agency_letter(federation: Federation, n: int, to: str) -> bytes:
    """A genuine agency message to ``to``, signed by agency and encrypted to the provider."""
    message = letter(AGENCY_USER, n).replace(
        b"To: hemi.walker@securemail.provider.nz", f"To: {to}".encode()
    )
    return protect(
        message,
        signer(federation, "agency"),
        [encryption_certificate(federation, "provider")],
        now=NOW,
        options=ProtectOptions(sealed_for=SealedFor("provider", (to,))),
    ).message


def with_outer(message: bytes, fields: str) -> bytes:
    """``message`` with its outer (unsigned) Subject replaced and ``fields`` added on top."""
    outer = message.replace(b"Subject: SecureMail message", f"Subject: {PHISH}".encode(), 1)
    return fields.encode() + outer


def test_anonymous_garbage_with_a_forged_member_sender_gets_no_notice(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage S/MIME over gsp's connection, MAIL FROM a minister: quarantined, logged,
    nothing sent."""
    minister_box = federation.nodes["agency"].mailbox(MINISTER)

    async def scenario() -> None:
        async with running(federation, "provider", "agency"):
            garbage = garbage_smime()
            reply = await send_to_peer(federation, "provider", MINISTER, garbage, member="gsp")
            assert reply.startswith("2"), reply
            await wait_until(lambda: final_inbound(federation, "provider"), "a verdict")
            await asyncio.sleep(1.5)  # a notice, relayed and delivered, would show by now

    asyncio.run(scenario())
    [entry] = entries(federation, "provider", Direction.INBOUND)
    assert entry.state is State.QUARANTINED
    assert quarantine_reason(federation, "provider", entry.id) in ("malformed", "not-for-us")
    assert entries(federation, "provider", Direction.OUTBOUND) == []
    assert entries(federation, "agency", Direction.INBOUND) == []
    assert mailbox_files(minister_box) == []
    assert "no notice sent" in caplog.text


def test_verified_mail_whose_envelope_sender_the_signer_does_not_own_gets_no_notice(
    federation: Federation,
) -> None:
    """A genuine agency message re-sent MAIL FROM a harbour address bounces here silently."""

    async def scenario() -> None:
        async with running(federation, "provider"):
            message = agency_letter(federation, 21, NOBODY)
            reply = await send_to_peer(federation, "provider", HARBOUR_USER, message, to=NOBODY)
            assert reply.startswith("2"), reply
            await wait_until(lambda: final_inbound(federation, "provider"), "a verdict")
            await asyncio.sleep(1.0)

    asyncio.run(scenario())
    [entry] = entries(federation, "provider", Direction.INBOUND)
    assert entry.state is State.BOUNCED
    assert entries(federation, "provider", Direction.OUTBOUND) == []


def test_notice_to_a_vouched_sender_quotes_only_signed_fields(federation: Federation) -> None:
    """A verified sender's failure notice quotes the signed fields, never the outer header."""
    sender_box = federation.nodes["agency"].mailbox(AGENCY_USER)
    outer = f"X-Injected: {PHISH}\r\n"

    async def scenario() -> bytes:
        async with running(federation, "provider", "agency"):
            message = with_outer(agency_letter(federation, 22, NOBODY), outer)
            reply = await send_to_peer(federation, "provider", AGENCY_USER, message, to=NOBODY)
            assert reply.startswith("2"), reply
            files = await wait_until(lambda: mailbox_files(sender_box) or None, "the notice")
            return files[0]

    notice = asyncio.run(scenario())
    assert b"X-SecureMail-Reason: no-such-mailbox" in notice
    assert b"Message-ID: <refusal-22@agency.govt.nz>" in notice  # the signed one
    assert b"phish.example" not in notice
    assert b"X-Injected" not in notice
    assert b"Tender 22" not in notice  # the signed Subject is not a routing field
