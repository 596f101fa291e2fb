"""The document as a message: written, found again, and stamped with the gateway's fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.structured.documents import identify, parse
from securemail.structured.message import (
    ID_FIELD,
    TYPE_FIELD,
    Outgoing,
    compose,
    declares,
    find,
    may_carry,
    stamp,
)
from tests.structured.conftest import sample

INVOICE = sample("invoice-nz-valid.xml")
KIND = identify(parse(INVOICE))
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _outgoing(**changes: object) -> Outgoing:
    base = Outgoing(
        INVOICE,
        KIND,
        "KOW-2026-0412",
        "ap@kowhai.example.nz",
        "invoices@council.govt.nz",
        "Invoice KOW-2026-0412",
    )
    return Outgoing(**{**vars(base), **changes})


def test_the_message_names_the_type_asks_for_a_receipt_and_carries_the_document_intact() -> None:
    """compose() writes the type and id fields and a receipt request; find() gets the bytes back."""
    message, message_id = compose(_outgoing(), NOW)
    head = message.split(b"\n\n", 1)[0].decode()
    assert f"{TYPE_FIELD}: {KIND.identifier}" in head.replace("\n ", " ")
    assert f"{ID_FIELD}: KOW-2026-0412" in head
    assert "Disposition-Notification-To: ap@kowhai.example.nz" in head
    assert f"Message-ID: {message_id}" in head
    found = find(message)
    assert found is not None and found.document == INVOICE
    assert found.declared_type == KIND.identifier and declares(message)


def test_no_receipt_and_an_answer_are_written_as_asked() -> None:
    """receipt=False leaves out the request; in_reply_to names the answered message."""
    message, _ = compose(_outgoing(receipt=False, in_reply_to="<inv-1@kowhai.example.nz>"), NOW)
    assert b"Disposition-Notification-To" not in message
    found = find(message)
    assert found is not None and found.in_reply_to == "<inv-1@kowhai.example.nz>"


def test_a_message_with_text_and_an_xml_attachment_is_not_a_document() -> None:
    """Only a message whose one part is XML is a structured document."""
    message = (
        b"From: a@b.nz\r\nTo: c@d.nz\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n"
        b"hello\r\n--b\r\nContent-Type: application/xml\r\n\r\n<a/>\r\n--b--\r\n"
    )
    assert find(message) is None and not declares(message)


def test_stamp_replaces_forged_type_fields_and_keeps_the_senders_receipt_choice() -> None:
    """A submitted message's own type and id fields are replaced by the gateway's."""
    submitted = (
        b"From: ap@kowhai.example.nz\r\nTo: invoices@council.govt.nz\r\n"
        b"SecureMail-Document-Type: forged\r\nsecuremail-document-id: forged\r\n"
        b"Disposition-Notification-To: other@kowhai.example.nz\r\n"
        b"Content-Type: application/xml\r\n\r\n" + INVOICE
    )
    stamped = stamp(submitted, KIND, "KOW-2026-0412", "ap@kowhai.example.nz")
    head = stamped.split(b"\r\n\r\n", 1)[0]
    assert b"forged" not in head
    assert head.count(b"Disposition-Notification-To") == 1 and b"other@kowhai" in head
    assert f"{TYPE_FIELD}: {KIND.identifier}".encode() in head
    assert stamped.endswith(INVOICE)


def test_ordinary_mail_is_not_parsed_on_the_submission_path() -> None:
    """may_carry() is False for plain mail and for text and PDF parts, True for an XML part."""
    assert may_carry(b"From: a@b.nz\r\nSubject: hi\r\n\r\nhello\r\n") is False
    pdf = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n"
    )
    assert may_carry(pdf) is False
    message, _ = compose(_outgoing(), NOW)
    assert may_carry(message)


_XML_PART = re.compile(rb"(?im)^content-type:[ \t]*(?:application|text)/xml\b")
_PIECES = [b"Content-Type:", b"CONTENT-type:", b"content-typE: ", b"\t", b" ", b"\r\n", b"\n"]
_PIECES += [b"\r", b"application/xml", b"TEXT/XML", b"text/xmlx", b"text/xml;", b"x", b"-"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=25).map(b"".join))
def test_the_xml_part_search_is_the_case_blind_line_start_pattern(message: bytes) -> None:
    """may_carry() finds an XML Content-Type exactly where ^content-type:... (?im) does."""
    expected = _XML_PART.search(message) is not None or declares(message)
    assert may_carry(message) is expected
