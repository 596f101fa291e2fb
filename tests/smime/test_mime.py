"""The strict MIME reader and writer of the S/MIME layer."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.smime import Limits, Reason, SmimeError
from securemail.smime.mime import (
    canonicalize,
    content_type,
    encode_base64,
    field,
    header_fields,
    read_entity,
    split_header,
)

LIMITS = Limits()


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n"),
        (b"a\r\r\nb\n\r", b"a\r\n\r\nb\r\n\r\n"),
    ],
)
def test_canonicalize_makes_every_line_end_crlf(raw: bytes, canonical: bytes) -> None:
    """Bare CR and bare LF become CRLF; CRLF stays."""
    assert canonicalize(raw) == canonical


def test_folded_fields_are_unfolded_and_order_kept() -> None:
    """Continuation lines join their field; names keep their case and order."""
    block, body = split_header(b"To: a@x.nz,\r\n  b@x.nz\r\nSubject: hi\r\n\r\nbody", LIMITS)
    assert header_fields(block, LIMITS) == [("To", b"a@x.nz, b@x.nz"), ("Subject", b"hi")]
    assert body == b"body"


def test_header_line_without_colon_is_malformed() -> None:
    """A header line that is not a field is refused."""
    with pytest.raises(SmimeError) as refused:
        header_fields(b"To a@x.nz\r\n", LIMITS)
    assert refused.value.reason is Reason.MALFORMED


def test_duplicate_content_type_is_malformed() -> None:
    """Two Content-Type fields cannot both be believed: refused."""
    fields = [("Content-Type", b"text/plain"), ("content-type", b"application/pkcs7-mime")]
    with pytest.raises(SmimeError):
        field(fields, "Content-Type")


def test_content_type_parameters() -> None:
    """Type and parameters are read, type lower-cased, quoted values unquoted."""
    value = b'Application/PKCS7-MIME; smime-type=enveloped-data; name="smime.p7m"'
    assert content_type([("Content-Type", value)]) == (
        "application/pkcs7-mime",
        {"smime-type": "enveloped-data", "name": "smime.p7m"},
    )


def test_base64_lines_are_76_characters_crlf() -> None:
    """Base64 output is in CRLF lines of at most 76 characters (RFC 2045 §6.8) and decodes."""
    data = bytes(range(256)) * 20
    encoded = encode_base64(data)
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) <= 76 for line in lines)
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    assert base64.b64decode(encoded) == data


def test_binary_body_of_pkcs7_entity_is_not_touched() -> None:
    """A binary body keeps its CR and LF bytes even when the header uses LF line ends."""
    body = b"\x30\x03\r\n\n"
    entity = b"Content-Type: application/pkcs7-mime\nContent-Transfer-Encoding: binary\n\n"
    assert read_entity(entity + body, LIMITS).der == body


def test_multipart_signed_first_part_exact_bytes() -> None:
    """The signed part of multipart/signed is exactly the bytes between the delimiters."""
    signature = base64.b64encode(b"\x30\x00").decode()
    message = (
        'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        'micalg=sha-256; boundary="b1"\r\n\r\n'
        "preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsigned --b1 text\r\n\r\n--b1\r\n"
        f"Content-Type: application/pkcs7-signature\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{signature}\r\n--b1--\r\nepilogue\r\n"
    ).encode()
    entity = read_entity(message, LIMITS)
    assert entity.detached_content == b"Content-Type: text/plain\r\n\r\nsigned --b1 text\r\n"
    assert entity.der == b"\x30\x00"


def test_plain_text_is_not_smime() -> None:
    """An ordinary text message is refused as not signed."""
    with pytest.raises(SmimeError) as refused:
        read_entity(b"Content-Type: text/plain\r\n\r\nhello\r\n", LIMITS)
    assert refused.value.reason is Reason.NOT_SIGNED


def test_unknown_transfer_encoding_is_malformed() -> None:
    """quoted-printable (or anything else) is not a transfer encoding for CMS content."""
    entity = (
        b"Content-Type: application/pkcs7-mime\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nx"
    )
    with pytest.raises(SmimeError) as refused:
        read_entity(entity, LIMITS)
    assert refused.value.reason is Reason.MALFORMED


_EMPTY_LINE = re.compile(rb"(?:^|\r?\n)(\r?\n)")  # what the header's end was found with


def _by_expression(data: bytes, limits: Limits) -> tuple[bytes, bytes] | Reason:
    found = _EMPTY_LINE.search(data, 0, limits.max_header_bytes + 4)
    if found is None:
        return Reason.TOO_LARGE if len(data) > limits.max_header_bytes else Reason.MALFORMED
    head = b"" if found.start() == 0 else canonicalize(data[: found.start()]) + b"\r\n"
    return head, data[found.end() :]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"b: c", b" "]), max_size=30).map(
        b"".join
    ),
    st.sampled_from([0, 1, 2, 3, 5, 8, 13, 1000]),
)
def test_the_header_ends_where_the_expression_found_it(data: bytes, max_header: int) -> None:
    """split_header splits at the first empty line (CRLF or LF) within the header limit
    exactly where the regular expression it replaced did, and refuses what it refused."""
    limits = Limits(max_header_bytes=max_header)
    try:
        ours: tuple[bytes, bytes] | Reason = split_header(data, limits)
    except SmimeError as error:
        ours = error.reason
    assert ours == _by_expression(data, limits)
