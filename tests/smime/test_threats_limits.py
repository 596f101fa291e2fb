"""Security regressions for parsers and resource limits (THREATS.md G, and D9): early, fast.

Hostile sizes and shapes (deep or huge DER, header bombs, odd multiparts, compression
bombs) are refused before asn1crypto or the ``email`` package sees them, or are never parsed
at all. The timing bounds are generous (seconds, not milliseconds) so that they catch a
quadratic or exponential path, not a slow machine.
"""

from __future__ import annotations

import time
import tracemalloc
import zlib
from collections.abc import Callable
from functools import partial

import pytest

from securemail.smime import (
    Limits,
    Reason,
    SmimeError,
    der,
    encrypt,
    mime,
    oids,
    protect,
    sign,
    sign_message,
    unprotect,
)
from securemail.smime.limits import check_der
from securemail.smime.verify import verify_signed_data
from tests.conftest import MESSAGE, NOW, Pki

ID_CT_COMPRESSED_DATA = "1.2.840.113549.1.9.16.1.9"
ZLIB = "1.2.840.113549.1.9.16.3.8"  # id-alg-zlibCompress (RFC 3274)
FAST = 30.0  # seconds: a refusal takes milliseconds; this bound catches hangs and
# quadratic blow-ups (200,000 parts squared is far beyond it) even on a heavily loaded machine


def refused(action: Callable[[], object]) -> tuple[SmimeError, float]:
    """Run ``action``, which must raise SmimeError; return it and the seconds it took."""
    start = time.perf_counter()
    with pytest.raises(SmimeError) as caught:
        action()
    return caught.value, time.perf_counter() - start


def open_as_ministry(pki: Pki, data: bytes, bounds: Limits | None = None) -> bytes:
    """Unprotect ``data`` at the ministry's gateway; return the verified content."""
    return unprotect(
        data,
        identities=[pki.ministry.recipient],
        trust=pki.trust(),
        now=NOW,
        bounds=bounds or Limits(),
    ).content


def opaque(cms_der: bytes, smime_type: bytes = b"signed-data") -> bytes:
    """A whole message that is one binary application/pkcs7-mime entity."""
    return (
        b"From: alice@agency.govt.nz\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type + b"\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + cms_der
    )


def nested(depth: int, innermost: bytes = b"\x05\x00") -> bytes:
    """``depth`` SEQUENCEs, one inside the other, around ``innermost``."""
    value = innermost
    for _ in range(depth):
        value = der.encode(der.SEQUENCE, value)
    return value


def signed_der(pki: Pki, content: bytes = MESSAGE) -> bytes:
    return sign.sign(content, pki.agency.signer, now=NOW).der.join()


# --- G: DER shape -----------------------------------------------------------------------------


def test_der_nested_1000_deep(pki: Pki) -> None:
    """DER nested 1000 deep is too-large at the pre-scan, in bounded time."""
    deep = nested(1000)
    error, seconds = refused(lambda: check_der(deep))
    assert error.reason is Reason.TOO_LARGE
    assert seconds < FAST


def test_cms_nested_1000_deep_in_a_message(pki: Pki) -> None:
    """A message whose CMS is a ContentInfo nested 1000 deep is too-large, not a RecursionError."""
    body = der.encode(der.SEQUENCE, der.oid(oids.ID_SIGNED_DATA), der.encode(0xA0, nested(1000)))
    error, seconds = refused(lambda: open_as_ministry(pki, opaque(body)))
    assert error.reason is Reason.TOO_LARGE
    assert seconds < FAST


def test_indefinite_length_nested_1000_deep() -> None:
    """BER indefinite-length values nested 1000 deep are too-large too."""
    deep = b"\x30\x80" * 1000 + b"\x05\x00" + b"\x00\x00" * 1000
    error, seconds = refused(lambda: check_der(deep))
    assert error.reason is Reason.TOO_LARGE
    assert seconds < FAST


def test_der_200_001_values(pki: Pki) -> None:
    """A SEQUENCE of 200,001 NULLs is too-large, in a message as well as at the pre-scan."""
    flat = der.encode(der.SEQUENCE, b"\x05\x00" * 200_001)
    error, seconds = refused(lambda: check_der(flat))
    assert error.reason is Reason.TOO_LARGE
    assert seconds < FAST
    body = der.encode(der.SEQUENCE, der.oid(oids.ID_SIGNED_DATA), der.encode(0xA0, flat))
    error, seconds = refused(lambda: open_as_ministry(pki, opaque(body)))
    assert error.reason is Reason.TOO_LARGE
    assert seconds < FAST


def test_der_limits_are_configurable(pki: Pki) -> None:
    """A real SignedData passes the default pre-scan and fails a tighter one."""
    signed = signed_der(pki)
    check_der(signed)
    assert refused(lambda: check_der(signed, Limits(max_der_depth=3)))[0].reason is (
        Reason.TOO_LARGE
    )
    assert refused(lambda: check_der(signed, Limits(max_der_values=10)))[0].reason is (
        Reason.TOO_LARGE
    )


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("truncated", b"\x30\x82\x01\x00" + b"\x05\x00" * 10),
        ("truncated-header", b"\x30"),
        ("truncated-long-length", b"\x30\x84\x00\x00"),
        ("indefinite-primitive", b"\x30\x80\x04\x80\x41\x41\x00\x00\x00\x00"),
        ("overruns-container", b"\x30\x04\x04\x08AAAAAAAA"),
        ("length-of-length-too-long", b"\x30\x89" + b"\x01" * 9 + b"\x05\x00"),
        ("trailing-bytes", b"\x05\x00\x05\x00"),
        ("high-tag-number", b"\x1f\x81\x00\x00"),
        ("unterminated-indefinite", b"\x30\x80\x05\x00"),
    ],
)
def test_broken_der_is_malformed(case: str, data: bytes) -> None:
    """Truncated DER, indefinite length on a primitive, overrunning lengths: malformed."""
    assert refused(lambda: check_der(data))[0].reason is Reason.MALFORMED


def test_truncated_signed_data_in_a_message(pki: Pki) -> None:
    """A SignedData cut short in transit is malformed, whichever byte it stops at."""
    signed = signed_der(pki)
    for cut in (1, 2, 20, len(signed) // 2, len(signed) - 1):
        error, _ = refused(partial(open_as_ministry, pki, opaque(signed[:cut])))
        assert error.reason is Reason.MALFORMED, cut


def test_length_overrunning_container_in_a_message(pki: Pki) -> None:
    """An inner length made larger than its container is malformed before asn1crypto reads it."""
    signed = bytearray(signed_der(pki))
    assert signed[:2] == b"\x30\x82"  # ContentInfo, two length bytes
    oid_at = 4  # the contentType OID follows the outer header
    assert signed[oid_at] == 0x06
    signed[oid_at + 1] = 0x7F  # OID length now runs past the ContentInfo
    error, _ = refused(lambda: open_as_ministry(pki, opaque(bytes(signed))))
    assert error.reason is Reason.MALFORMED


# --- G: sizes of messages and headers ---------------------------------------------------------


def test_message_over_max_message_bytes(pki: Pki) -> None:
    """A message one byte over Limits.max_message_bytes is too-large before it is read."""
    message = protect(MESSAGE, pki.agency.signer, [pki.ministry.certificate], now=NOW).message
    small = Limits(max_message_bytes=len(message) - 1)
    assert refused(lambda: open_as_ministry(pki, message, small))[0].reason is Reason.TOO_LARGE
    assert open_as_ministry(pki, message, Limits(max_message_bytes=len(message))) == MESSAGE


def test_header_with_too_many_fields(pki: Pki) -> None:
    """A header of 1,001 fields (max_header_fields is 1,000) is too-large."""
    signed = sign_message(MESSAGE, pki.agency.signer, now=NOW).message
    bomb = b"X-Filler: x\r\n" * 1001 + signed
    error, seconds = refused(lambda: open_as_ministry(pki, bomb))
    assert error.reason is Reason.TOO_LARGE
    assert seconds < FAST


def test_header_block_over_max_header_bytes(pki: Pki) -> None:
    """A header block over max_header_bytes is too-large, with or without an end in sight."""
    signed = sign_message(MESSAGE, pki.agency.signer, now=NOW).message
    long_field = b"X-Filler: " + b"x" * (300 * 1024) + b"\r\n"
    error, _ = refused(lambda: open_as_ministry(pki, long_field + signed))
    assert error.reason is Reason.TOO_LARGE
    endless = b"X-Filler: x\r\n" * 30_000  # 390 KB and never an empty line
    error, seconds = refused(lambda: open_as_ministry(pki, endless))
    assert error.reason is Reason.TOO_LARGE
    assert seconds < FAST


def test_small_custom_header_limits(pki: Pki) -> None:
    """Header limits follow the Limits passed in: 5 fields or 200 bytes refuse a real message."""
    signed = sign_message(MESSAGE, pki.agency.signer, now=NOW).message
    for bounds in (Limits(max_header_fields=5), Limits(max_header_bytes=200)):
        error, _ = refused(partial(open_as_ministry, pki, signed, bounds))
        assert error.reason is Reason.TOO_LARGE


# --- G: multipart/signed shape ----------------------------------------------------------------


def multipart_signed(pki: Pki, parts: list[bytes], close: bool = True) -> bytes:
    body = b"".join(b"--b1\r\n" + part + b"\r\n" for part in parts)
    return (
        b"From: alice@agency.govt.nz\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
        b' micalg=sha-256; boundary="b1"\r\n\r\n' + body + (b"--b1--\r\n" if close else b"")
    )


def signature_part(pki: Pki) -> bytes:
    detached = sign.sign(MESSAGE, pki.agency.signer, now=NOW, detached=True).der.join()
    return (
        b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + mime.encode_base64(detached)
    )


def test_multipart_signed_control(pki: Pki) -> None:
    """The two-part multipart/signed built here verifies."""
    assert open_as_ministry(pki, multipart_signed(pki, [MESSAGE, signature_part(pki)])) == MESSAGE


def test_multipart_signed_with_three_parts(pki: Pki) -> None:
    """A multipart/signed with a third part is malformed."""
    message = multipart_signed(pki, [MESSAGE, signature_part(pki), b"\r\nextra"])
    assert refused(lambda: open_as_ministry(pki, message))[0].reason is Reason.MALFORMED


def test_multipart_signed_without_close_delimiter(pki: Pki) -> None:
    """A multipart/signed that never closes its boundary is malformed."""
    message = multipart_signed(pki, [MESSAGE, signature_part(pki)], close=False)
    assert refused(lambda: open_as_ministry(pki, message))[0].reason is Reason.MALFORMED


def test_multipart_signed_with_200_000_parts(pki: Pki) -> None:
    """200,000 boundary lines in a multipart/signed are refused (malformed) in linear time."""
    message = multipart_signed(pki, [b"\r\nx"] * 200_000)
    error, seconds = refused(lambda: open_as_ministry(pki, message))
    assert error.reason is Reason.MALFORMED
    assert seconds < FAST


# --- G: what the core never parses ------------------------------------------------------------


def test_mime_nested_1000_deep_inside_signed_content(pki: Pki) -> None:
    """Signed content nested 1000 multiparts deep comes back untouched, fast, no RecursionError."""
    body = b"text\r\n"
    for level in range(1000):
        boundary = b"n%d" % level
        body = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
            b"--" + boundary + b"\r\n" + body + b"\r\n--" + boundary + b"--\r\n"
        )
    content = b"From: alice@agency.govt.nz\r\nMIME-Version: 1.0\r\n" + body
    message = protect(content, pki.agency.signer, [pki.ministry.certificate], now=NOW).message
    start = time.perf_counter()
    assert open_as_ministry(pki, message) == content
    assert time.perf_counter() - start < FAST


# --- D/G: compressed data is never decompressed -----------------------------------------------


def compressed_data(payload: bytes) -> bytes:
    """A CMS CompressedData value (RFC 3274) holding zlib(``payload``)."""
    encap = der.encode(
        der.SEQUENCE,
        der.oid(oids.ID_DATA),
        der.encode(0xA0, der.octet_string(zlib.compress(payload, 9)).join()),
    )
    return der.encode(der.SEQUENCE, der.integer(0), der.encode(der.SEQUENCE, der.oid(ZLIB)), encap)


def content_info(content_type: str, content: bytes) -> bytes:
    return der.encode(der.SEQUENCE, der.oid(content_type), der.encode(0xA0, content))


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """CompressedData that would inflate to 256 MiB (about 250 KB on the wire)."""
    return compressed_data(bytes(256 * 1024 * 1024))


def refused_without_inflating(action: Callable[[], object]) -> SmimeError:
    """``action`` is refused quickly and without allocating anything near the bomb's size."""
    tracemalloc.start()
    try:
        error, seconds = refused(action)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < FAST
    assert peak < 16 * 1024 * 1024
    return error


def test_compressed_data_message_refused(pki: Pki, zip_bomb: bytes) -> None:
    """A compressed-data message (a zip bomb) is refused as not-signed, never inflated."""
    message = opaque(content_info(ID_CT_COMPRESSED_DATA, zip_bomb), b"compressed-data")
    error = refused_without_inflating(lambda: open_as_ministry(pki, message))
    assert error.reason is Reason.NOT_SIGNED


def test_compressed_data_inside_encryption_refused(pki: Pki, zip_bomb: bytes) -> None:
    """A compressed-data entity inside an AES-GCM envelope is refused, never inflated."""
    inner = (
        b"Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + content_info(ID_CT_COMPRESSED_DATA, zip_bomb)
    )
    envelope = encrypt.encrypt(inner, [pki.ministry.certificate]).join()
    message = opaque(envelope, b"authEnveloped-data")
    error = refused_without_inflating(lambda: open_as_ministry(pki, message))
    assert error.reason is Reason.NOT_SIGNED


def test_signed_compressed_data_refused(pki: Pki, zip_bomb: bytes) -> None:
    """A valid signature over compressed-data (eContentType) is malformed, never inflated."""
    signed = sign.sign(
        zip_bomb, pki.agency.signer, now=NOW, content_type=ID_CT_COMPRESSED_DATA
    ).der.join()
    assert verify_signed_data(signed)[0] == zip_bomb  # the signature itself is good
    error = refused_without_inflating(lambda: open_as_ministry(pki, opaque(signed)))
    assert error.reason is Reason.MALFORMED
    assert ID_CT_COMPRESSED_DATA in error.detail  # refused for its type, not by accident
