"""Property-based fuzzing of the S/MIME core's input paths (THREATS.md G): only typed errors.

Random bytes, MIME-shaped noise, and mutations (bit flips, truncations, insertions,
deletions, and DER-aware edits of one tag, length or value) of valid protected messages,
SignedData and receipts are fed to every entry point that reads untrusted input:
``unprotect``, ``verify_signed_data``, ``verify_receipt``, ``check_der`` and
``mime.read_entity``. Two properties must hold for every input:

- the only exception is :class:`SmimeError` (never IndexError, RecursionError, an asn1crypto
  or cryptography error, ...), and every call returns promptly;
- a mutated message that still verifies yields exactly the original signed content.

Bounded to 200 examples per property so the file runs in seconds; raise ``max_examples``
locally (e.g. ``--hypothesis-seed``, or edit ``FUZZ``) for a longer campaign.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.smime import (
    Limits,
    ProtectOptions,
    ReceiptBasis,
    ReceiptRequest,
    SecurityLabel,
    SignerIdentity,
    SmimeError,
    TrustStore,
    encrypt,
    make_receipt,
    mime,
    protect,
    receipt_entity,
    sign,
    sign_message,
    unprotect,
    verify_receipt,
)
from securemail.smime.limits import check_der
from securemail.smime.verify import verify_signed_data
from tests.conftest import MESSAGE, NOW, Pki

pytestmark = pytest.mark.filterwarnings(
    # mutated certificates (e.g. a negative serial) make cryptography warn; that is expected
    "ignore::cryptography.utils.CryptographyDeprecationWarning"
)

FUZZ = settings(max_examples=200, deadline=None)
HANG = 30.0  # seconds: a refusal takes milliseconds; generous for loaded CI machines
LIMITS = Limits()
T = TypeVar("T")


@dataclass(frozen=True)
class Corpus:
    """Valid inputs to mutate, made once for the module."""

    trust: TrustStore
    gcm: bytes
    cbc: bytes
    ecdh: bytes
    signed: bytes
    multipart: bytes
    signed_der: bytes
    receipt_der: bytes
    receipt_basis: ReceiptBasis


@pytest.fixture(scope="module")
def corpus(pki: Pki) -> Corpus:
    """Protected messages, SignedData and a receipt, all valid, with labels and a request."""
    options = ProtectOptions(
        label=SecurityLabel("IN-CONFIDENCE", "PERSONAL"),
        receipt_request=ReceiptRequest(b"fuzz-1", ("gateway@agency.govt.nz",)),
    )
    signer = SignerIdentity(
        pki.agency.certificate, pki.agency.issued.private_key, chain=(pki.ca.certificate,)
    )

    def protected(cipher: str, to: Pki | None = None) -> bytes:
        recipient = pki.council if to is not None else pki.ministry
        return protect(
            MESSAGE,
            signer,
            [recipient.certificate],
            now=NOW,
            options=ProtectOptions(
                cipher=cipher,  # type: ignore[arg-type]
                label=options.label,
                receipt_request=options.receipt_request,
            ),
        ).message

    signed = sign_message(MESSAGE, signer, now=NOW, options=options)
    signed_der = mime.read_entity(signed.message, LIMITS).der
    assert signed.receipt_basis is not None
    trust = pki.trust()
    verified = unprotect(signed.message, identities=[], trust=trust, now=NOW)
    return Corpus(
        trust=trust,
        gcm=protected("aes256-gcm"),
        cbc=protected("aes256-cbc"),
        ecdh=protected("aes128-gcm", to=pki),
        signed=signed.message,
        multipart=multipart_signed(pki),
        signed_der=signed_der,
        receipt_der=make_receipt(verified.signature, pki.ministry.signer, now=NOW),
        receipt_basis=signed.receipt_basis,
    )


def multipart_signed(pki: Pki) -> bytes:
    """MESSAGE as a detached multipart/signed (RFC 1847) by the agency."""
    detached = sign.sign(MESSAGE, pki.agency.signer, now=NOW, detached=True).der.join()
    return (
        b"From: alice@agency.govt.nz\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
        b' micalg=sha-256; boundary="fz"\r\n\r\n'
        b"--fz\r\n" + MESSAGE + b"\r\n--fz\r\n"
        b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + mime.encode_base64(detached)
        + b"\r\n--fz--\r\n"
    )


# --- running an input -------------------------------------------------------------------------


def only_smime_errors(action: Callable[[], T]) -> T | None:
    """Run ``action``; return its result, or None if it raised SmimeError. Anything else fails."""
    start = time.perf_counter()
    try:
        return action()
    except SmimeError:
        return None
    finally:
        assert time.perf_counter() - start < HANG


def open_message(pki: Pki, corpus: Corpus, data: bytes) -> bytes | None:
    """Unprotect ``data`` as the ministry (and council) gateway; the content if it verified."""
    result = only_smime_errors(
        lambda: unprotect(
            data,
            identities=[pki.ministry.recipient, pki.council.recipient],
            trust=corpus.trust,
            now=NOW,
        )
    )
    return None if result is None else result.content


# --- mutations --------------------------------------------------------------------------------

Edit = tuple[str, int, bytes]
EDITS = st.lists(
    st.tuples(
        st.sampled_from(("flip", "truncate", "insert", "delete", "replace", "der")),
        st.integers(min_value=0, max_value=2**32 - 1),
        st.binary(min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, edits: list[Edit]) -> bytes:
    """Apply ``edits`` in turn; positions wrap around the current length."""
    out = bytearray(data)
    for kind, where, chunk in edits:
        at = where % (len(out) + 1)
        if kind == "flip" and out:
            out[where % len(out)] ^= 1 << (chunk[0] % 8)
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = chunk
        elif kind == "delete":
            del out[at : at + 1 + chunk[0] % 64]
        elif kind == "replace":
            out[at : at + len(chunk)] = chunk
        elif kind == "der":
            out = bytearray(mutate_der_value(bytes(out), where, chunk))
    return bytes(out)


def der_values(data: bytes) -> list[tuple[int, int, int]]:
    """(start, content start, end) of the DER values that parse cleanly, outermost first."""
    found: list[tuple[int, int, int]] = []
    stack = [(0, len(data))]
    while stack and len(found) < 4096:
        pos, end = stack.pop()
        while pos + 2 <= end:
            tag, first = data[pos], data[pos + 1]
            start, pos = pos, pos + 2
            if first & 0x80:
                size = first & 0x7F
                if not 0 < size <= 4 or pos + size > end:
                    break
                length, pos = int.from_bytes(data[pos : pos + size], "big"), pos + size
            else:
                length = first
            if pos + length > end:
                break
            found.append((start, pos, pos + length))
            if tag & 0x20:
                stack.append((pos, pos + length))
            pos += length
    return found


def mutate_der_value(data: bytes, where: int, chunk: bytes) -> bytes:
    """Change one DER value: its tag, its length byte, its content, or drop/duplicate it."""
    values = der_values(data)
    if not values:
        return data
    start, body, end = values[where % len(values)]
    action = chunk[0] % 6
    if action == 0:
        return data[:start] + bytes((chunk[-1],)) + data[start + 1 :]
    if action == 1:
        return data[: start + 1] + bytes((chunk[-1],)) + data[start + 2 :]
    if action == 2:
        return data[:body] + chunk[1:] + data[end:]  # new content, stale lengths outside
    if action == 3:
        return data[:start] + data[end:]
    if action == 4:
        return data[:end] + data[start:end] + data[end:]
    return data[:body] + bytes(end - body) + data[end:]  # zeroed content


# --- properties -------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_only_smime_errors(pki: Pki, corpus: Corpus, data: bytes) -> None:
    """Random bytes at every entry point raise SmimeError or nothing, and never verify."""
    assert open_message(pki, corpus, data) is None
    only_smime_errors(lambda: check_der(data))
    only_smime_errors(lambda: mime.read_entity(data, LIMITS))
    assert only_smime_errors(lambda: verify_signed_data(data)) is None
    assert (
        only_smime_errors(
            lambda: verify_receipt(data, corpus.receipt_basis, trust=corpus.trust, now=NOW)
        )
        is None
    )


MIME_PIECES = st.sampled_from(
    [
        b"Content-Type: ",
        b"multipart/signed",
        b"application/pkcs7-mime",
        b"application/pkcs7-signature",
        b"; smime-type=signed-data",
        b'; protocol="application/pkcs7-signature"',
        b"; boundary=",
        b'"b"',
        b"b",
        b"--b",
        b"--b--",
        b"Content-Transfer-Encoding: ",
        b"base64",
        b"binary",
        b"quoted-printable",
        b"\r\n",
        b"\r\n\r\n",
        b"\r",
        b"\n",
        b" ",
        b"\t",
        b":",
        b";",
        b"=",
        b'"',
        b"\\",
        b"=?utf-8?b?",
        b"?=",
        b"MIIB",
        b"\x00",
        b"\xff",
        b"X-A: b",
        b"\x30\x80",
    ]
)


@FUZZ
@given(pieces=st.lists(MIME_PIECES, max_size=60))
def test_mime_shaped_noise(pki: Pki, corpus: Corpus, pieces: list[bytes]) -> None:
    """Header and boundary fragments in any order raise SmimeError or nothing."""
    data = b"".join(pieces)
    only_smime_errors(lambda: mime.read_entity(data, LIMITS))
    only_smime_errors(lambda: mime.read_entity(mime.canonicalize(data), LIMITS))
    assert open_message(pki, corpus, data) is None


@FUZZ
@given(
    which=st.sampled_from(("gcm", "cbc", "ecdh", "signed", "multipart")),
    beneath_base64=st.booleans(),
    edits=EDITS,
)
def test_mutated_message(
    pki: Pki, corpus: Corpus, which: str, beneath_base64: bool, edits: list[Edit]
) -> None:
    """A mutated protected or signed message is refused, or verifies as exactly the original."""
    original: bytes = getattr(corpus, which)
    if beneath_base64 and which != "multipart":  # reach the CMS parsers, not only base64
        head, _, body = original.partition(b"\r\n\r\n")
        cms_der = mime.decode_base64(body)
        mutated = head + b"\r\n\r\n" + mime.encode_base64(mutate(cms_der, edits))
    else:
        mutated = mutate(original, edits)
    content = open_message(pki, corpus, mutated)
    assert content is None or content == MESSAGE


@FUZZ
@given(edits=EDITS)
def test_mutated_signed_data(corpus: Corpus, edits: list[Edit]) -> None:
    """Mutated SignedData DER raises SmimeError, or verifies over exactly the original content."""
    data = mutate(corpus.signed_der, edits)
    only_smime_errors(lambda: check_der(data))
    result = only_smime_errors(lambda: verify_signed_data(data))
    assert result is None or result[0] == MESSAGE


@FUZZ
@given(edits=EDITS)
def test_mutated_signed_data_inside_encryption(pki: Pki, corpus: Corpus, edits: list[Edit]) -> None:
    """Mutated SignedData, freshly encrypted so it decrypts, is refused or is the original."""
    inner = (
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + mutate(corpus.signed_der, edits)
    )
    envelope = encrypt.encrypt(inner, [pki.ministry.certificate]).join()
    message = (
        b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + envelope
    )
    content = open_message(pki, corpus, message)
    assert content is None or content == MESSAGE


@FUZZ
@given(entity=st.booleans(), edits=EDITS)
def test_mutated_receipt(corpus: Corpus, entity: bool, edits: list[Edit]) -> None:
    """A mutated receipt (DER or S/MIME entity) raises SmimeError or still names the original."""
    original = receipt_entity(corpus.receipt_der) if entity else corpus.receipt_der
    data = mutate(original, edits)
    verified = only_smime_errors(
        lambda: verify_receipt(data, corpus.receipt_basis, trust=corpus.trust, now=NOW)
    )
    assert verified is None or verified.content_identifier == b"fuzz-1"


def test_corpus_is_valid(pki: Pki, corpus: Corpus) -> None:
    """Every unmutated input in the corpus verifies, so the properties above are meaningful."""
    for which in ("gcm", "cbc", "ecdh", "signed", "multipart"):
        assert open_message(pki, corpus, getattr(corpus, which)) == MESSAGE, which
    check_der(corpus.signed_der)
    assert verify_signed_data(corpus.signed_der)[0] == MESSAGE
    verified = verify_receipt(corpus.receipt_der, corpus.receipt_basis, trust=corpus.trust, now=NOW)
    assert verified.content_identifier == b"fuzz-1"
