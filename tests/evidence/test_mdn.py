"""The MDN to the original sender: a return receipt mail clients show, never the body."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage, Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.evidence import Evidence
from securemail.evidence.mdn import mdn
from tests.conftest import NOW
from tests.evidence.conftest import Exchange

SECRET = b"The budget figure is 42 million."
ORIGINAL = (
    b"From: Alice <alice@agency.govt.nz>\r\n"
    b"To: bob@ministry.govt.nz\r\n"
    b"Subject: Budget\r\n"
    b"Message-ID: <test-1@agency.govt.nz>\r\n"
    b"\r\n" + SECRET + b"\r\n"
)


def _mdn(evidence: Evidence, original: bytes = ORIGINAL, **changes: str) -> bytes:
    """An MDN from agency's gateway to Alice, with ``changes`` to its arguments."""
    arguments = {
        "reporting_mta": "gw1.agency.govt.nz",
        "postmaster": "postmaster@agency.govt.nz",
        "to": "alice@agency.govt.nz",
        "message_id_domain": "agency.govt.nz",
    } | changes
    return mdn(original_header=original, evidence=evidence, now=NOW, **arguments)


def _parts(notice: bytes) -> tuple[EmailMessage, list[EmailMessage]]:
    parsed = email.message_from_bytes(notice, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed, list(parsed.iter_parts())  # type: ignore[arg-type]


def _fields(part: EmailMessage) -> dict[str, str]:
    """The fields of the disposition-notification part, as the parser reads them."""
    payload = part.get_payload()
    assert isinstance(payload, list) and len(payload) == 1
    block = payload[0]
    assert isinstance(block, Message)
    return {name: str(value) for name, value in block.items()}


def test_mdn_is_a_disposition_notification_report(sent: Exchange) -> None:
    """Mail clients see multipart/report with text, the notification and the original header."""
    parsed, parts = _parts(_mdn(sent.evidence))
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "disposition-notification"
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/disposition-notification",
        "text/rfc822-headers",
    ]
    assert parsed["From"] == "Mail Delivery System <postmaster@agency.govt.nz>"
    assert parsed["To"] == "alice@agency.govt.nz"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Date"].datetime == NOW
    assert parsed["Message-ID"].endswith("@agency.govt.nz>")


def test_notification_fields_carry_the_evidence(sent: Exchange) -> None:
    """RFC 8098 fields name the recipient and message; X-SecureMail-* fields hold the evidence."""
    fields = _fields(_parts(_mdn(sent.evidence))[1][1])
    evidence = sent.evidence
    assert fields == {
        "Reporting-UA": "gw1.agency.govt.nz; SecureMail",
        "Final-Recipient": "rfc822; bob@ministry.govt.nz",
        "Original-Message-ID": "<test-1@agency.govt.nz>",
        "Disposition": "automatic-action/MDN-sent-automatically; processed",
        "X-SecureMail-Content-Digest": evidence.content_digest,
        "X-SecureMail-Content-Identifier": evidence.content_identifier,
        "X-SecureMail-Receiving-Org": "ministry",
        "X-SecureMail-Receiving-Gateway": "gw1.ministry.govt.nz",
        "X-SecureMail-Delivered-At": "2026-11-29T12:00:00Z",
    }


def test_text_says_delivered_not_read(sent: Exchange) -> None:
    """People read who got it, who verified it, when, and that it is not a read receipt."""
    text = _parts(_mdn(sent.evidence))[1][0].get_content()
    assert text == (
        "bob@ministry.govt.nz \N{EM DASH} delivered, decrypted and verified by ministry at "
        "2026-11-29 12:00:00 UTC.\r\nThis is a delivery receipt, not a read receipt.\r\n"
    )


def test_original_header_kept_and_body_never(sent: Exchange) -> None:
    """The original's header travels back; its body never does, even given the whole message."""
    notice = _mdn(sent.evidence)
    assert SECRET not in notice
    headers = _parts(notice)[1][2].get_payload(decode=True)
    assert isinstance(headers, bytes)
    assert b"Subject: Budget\r\n" in headers and b"Message-ID: <test-1@agency.govt.nz>" in headers


def test_crlf_throughout_and_message_id_optional(sent: Exchange) -> None:
    """The MDN is CRLF-canonical; without an original Message-ID that field is left out."""
    notice = _mdn(replace(sent.evidence, original_message_id=None))
    assert notice.count(b"\n") == notice.count(b"\r\n") == notice.count(b"\r")
    assert b"Original-Message-ID" not in notice


def test_non_ascii_recipient_uses_the_utf8_address_type(sent: Exchange) -> None:
    """An internationalised recipient is written as an RFC 6533 utf-8 address."""
    notice = _mdn(replace(sent.evidence, recipient="b\u00f6b@ministry.govt.nz"))
    assert b"Final-Recipient: utf-8; b\\x{F6}b@ministry.govt.nz\r\n" in notice


def test_header_values_cannot_inject_fields(sent: Exchange) -> None:
    """A postmaster, recipient or domain with a line break is refused."""
    for name in ("to", "postmaster", "reporting_mta", "message_id_domain"):
        with pytest.raises(ValueError):
            _mdn(sent.evidence, ORIGINAL, **{name: "x@y\r\nBcc: eve@example.com"})


@settings(max_examples=200, deadline=None)
@given(
    header=st.lists(st.binary(max_size=60), max_size=6),
    separator=st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\r", b"\r\n"]),
)
def test_no_body_line_ever_reaches_the_mdn(
    sent: Exchange, header: list[bytes], separator: bytes
) -> None:
    """Whatever the original's header looks like, the body line after it is never copied."""
    marker = b"BODY-LINE-7f3a9c"
    original = b"\r\n".join(header) + separator + marker + b"\r\n"
    assert marker not in _mdn(sent.evidence, original)
