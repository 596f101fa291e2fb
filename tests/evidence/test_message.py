"""The receipt message: built for the sending gateway, read back strictly, refused otherwise."""

from __future__ import annotations

import contextlib
import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.evidence import EvidenceError, EvidenceReason
from securemail.evidence.message import (
    MAX_MESSAGE_BYTES,
    RECEIPT_KIND,
    entity,
    frame_parts,
    is_receipt_message,
    read_receipt_message,
    receipt_message,
)
from securemail.smime import receipt_entity
from tests.conftest import MESSAGE, NOW
from tests.evidence.conftest import Exchange


def _message(sent: Exchange) -> bytes:
    return receipt_message(
        receipt_der=sent.receipt,
        evidence=sent.evidence,
        sender="postmaster@ministry.govt.nz",
        to="receipts@agency.govt.nz",
        now=NOW,
        message_id_domain="ministry.govt.nz",
    )


def _craft(parts: list[bytes], kind: str = RECEIPT_KIND) -> bytes:
    """A receipt message with exactly ``parts``, for the refusal cases."""
    boundary, body = frame_parts(parts)
    header = (
        f"From: postmaster@ministry.govt.nz\r\nX-SecureMail-Kind: {kind}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    )
    return header.encode() + body


def _refused(message: bytes) -> EvidenceReason:
    with pytest.raises(EvidenceError) as refused:
        read_receipt_message(message)
    return refused.value.reason


def test_round_trip(sent: Exchange) -> None:
    """The sending gateway reads back exactly the receipt and evidence that were sent."""
    assert read_receipt_message(_message(sent)) == (sent.receipt, sent.evidence)


def test_message_shape_for_mail_readers(sent: Exchange) -> None:
    """Header fields, the three parts, the explanation for people, and CRLF throughout."""
    data = _message(sent)
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["From"] == "postmaster@ministry.govt.nz"
    assert parsed["To"] == "receipts@agency.govt.nz"
    assert parsed["Subject"] == "SecureMail delivery receipt"
    assert parsed["X-SecureMail-Kind"] == "signed-receipt"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Message-ID"].endswith("@ministry.govt.nz>")
    assert parsed["Date"].datetime == NOW
    parts: list[EmailMessage] = list(parsed.iter_parts())  # type: ignore[arg-type]
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "application/pkcs7-mime",
        "application/json",
    ]
    assert parts[1].get_param("smime-type") == "signed-receipt"
    assert parts[1].get_payload(decode=True) == sent.receipt
    assert parts[2].get_payload(decode=True) == sent.evidence.to_json()
    text = parts[0].get_content()
    assert "delivered to bob@ministry.govt.nz" in text and "verified its signature" in text
    assert "ministry" in text and "not a read receipt" in text


def test_is_receipt_message_reads_only_the_header(sent: Exchange) -> None:
    """Receipt messages are recognised by their kind field; other mail and junk are not."""
    assert is_receipt_message(_message(sent))
    assert is_receipt_message(b"X-SecureMail-Kind: Signed-Receipt\r\n\r\n")
    assert not is_receipt_message(MESSAGE)
    assert not is_receipt_message(b"X-SecureMail-Kind: failure-notice\r\n\r\n")
    assert not is_receipt_message(b"\xff\x00 no header")
    assert not is_receipt_message(b"X-SecureMail-Kind: signed-receipt\r\n" * 2 + b"\r\n")


def test_wrong_or_missing_kind_refused(sent: Exchange) -> None:
    """Only a message marked signed-receipt is read as one."""
    parts = [receipt_entity(sent.receipt), entity("application/json", sent.evidence.to_json())]
    assert _refused(_craft(parts, kind="failure-notice")) is EvidenceReason.WRONG_KIND
    assert _refused(MESSAGE) is EvidenceReason.WRONG_KIND


def test_part_counts_enforced(sent: Exchange) -> None:
    """Exactly one receipt and one JSON part, at most one text, nothing else."""
    receipt = receipt_entity(sent.receipt)
    document = entity("application/json", sent.evidence.to_json())
    text = entity("text/plain", b"hello")
    html = entity("text/html", b"<p>hello</p>")
    assert read_receipt_message(_craft([document, receipt]))[0] == sent.receipt
    for parts in ([document], [receipt], [receipt, receipt, document],
                  [receipt, document, document], [text, text, receipt, document],
                  [receipt, document, html], []):  # fmt: skip
        assert _refused(_craft(parts)) is EvidenceReason.MALFORMED


def test_bad_evidence_refused(sent: Exchange) -> None:
    """A JSON part with unknown keys is refused as evidence-malformed."""
    bad = sent.evidence.to_json().replace(b'"version":1', b'"version":1,"z":0')
    message = _craft([receipt_entity(sent.receipt), entity("application/json", bad)])
    assert _refused(message) is EvidenceReason.EVIDENCE_MALFORMED


def test_oversize_refused(sent: Exchange) -> None:
    """A message over 256 KiB, or a receipt over 64 KiB, is refused as receipt-too-large."""
    document = entity("application/json", sent.evidence.to_json())
    padded = _message(sent).replace(b"\r\n\r\n", b"\r\n\r\n" + b" " * MAX_MESSAGE_BYTES, 1)
    assert _refused(padded) is EvidenceReason.TOO_LARGE
    huge = b"\x30\x83\x01\x40\x00" + bytes(0x14000)
    assert _refused(_craft([receipt_entity(huge), document])) is EvidenceReason.TOO_LARGE
    with pytest.raises(ValueError):
        receipt_message(**{**_arguments(sent), "receipt_der": huge})  # type: ignore[arg-type]


def _arguments(sent: Exchange) -> dict[str, object]:
    return {"receipt_der": sent.receipt, "evidence": sent.evidence,
            "sender": "postmaster@ministry.govt.nz", "to": "receipts@agency.govt.nz",
            "now": NOW, "message_id_domain": "ministry.govt.nz"}  # fmt: skip


def test_structure_refused(sent: Exchange) -> None:
    """No close delimiter, a receipt that is not DER, or no multipart: receipt-malformed."""
    whole = _message(sent)
    assert _refused(whole[: whole.rindex(b"--=_securemail")]) is EvidenceReason.MALFORMED
    document = entity("application/json", sent.evidence.to_json())
    not_der = _craft([receipt_entity(b"hello"), document])
    assert _refused(not_der) is EvidenceReason.MALFORMED
    flat = b"X-SecureMail-Kind: signed-receipt\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    assert _refused(flat) is EvidenceReason.MALFORMED


def test_builder_refuses_header_injection(sent: Exchange) -> None:
    """A receiptsTo value with a line break cannot add header fields."""
    for field in ("to", "sender", "message_id_domain"):
        with pytest.raises(ValueError):
            receipt_message(**{**_arguments(sent), field: "a@b\r\nBcc: eve@x"})  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_give_only_evidence_errors(data: bytes) -> None:
    """Whatever arrives as a receipt message, reading it raises EvidenceError or succeeds."""
    for candidate in (data, b"X-SecureMail-Kind: signed-receipt\r\n" + data):
        with contextlib.suppress(EvidenceError):
            read_receipt_message(candidate)
        assert isinstance(is_receipt_message(candidate), bool)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_receipt_messages_give_only_evidence_errors(
    sent: Exchange, data: st.DataObject
) -> None:
    """A real receipt message with bytes changed, cut or inserted is read or refused cleanly."""
    message = bytearray(_message(sent))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(message) - 1))
        action = data.draw(st.sampled_from(["set", "cut", "insert"]))
        chunk = data.draw(st.binary(min_size=1, max_size=8))
        if action == "set":
            message[at : at + len(chunk)] = chunk
        elif action == "cut":
            del message[at : at + len(chunk)]
        else:
            message[at:at] = chunk
    with contextlib.suppress(EvidenceError):
        read_receipt_message(bytes(message))
