"""Round trips of protect/unprotect for every algorithm combination of the profile."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from securemail.pki.authority import Issued, generate_key, issue
from securemail.smime import (
    ProtectOptions,
    Reason,
    ReceiptRequest,
    SecurityLabel,
    SignerIdentity,
    SmimeError,
    clear_sign,
    protect,
    sign_message,
    unprotect,
)
from securemail.smime.algorithms import CipherName, DigestName
from tests.conftest import NOW, Org, Pki


def open_as(org: Org, pki: Pki, data: bytes) -> bytes:
    """Unprotect ``data`` as ``org``'s gateway; return the verified content."""
    return unprotect(data, identities=[org.recipient], trust=pki.trust(), now=NOW).content


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("signer_kind", ["rsa-pkcs1v15", "rsa-pss", "ecdsa-p256"])
def test_every_signature_round_trips(
    pki: Pki, message: bytes, digest: DigestName, signer_kind: str
) -> None:
    """Each signature algorithm and digest verifies and reports itself correctly."""
    signer = pki.council if signer_kind == "ecdsa-p256" else pki.agency
    options = ProtectOptions(
        digest=digest, rsa_padding="pss" if signer_kind == "rsa-pss" else "pkcs1v15"
    )
    sent = protect(message, signer.signer, [pki.ministry.certificate], now=NOW, options=options)
    result = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert result.content == message
    assert result.signature.digest_algorithm == digest
    assert (
        result.signature.signature_algorithm
        == f"{signer_kind.split('-p256', maxsplit=1)[0]}-{digest}"
    )
    assert result.signature.signer == signer.certificate


@pytest.mark.parametrize("inner", ["binary", "base64"])
@pytest.mark.parametrize("recipient_kind", ["rsa", "ec"])
@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc"])
def test_every_cipher_and_key_management_round_trips(
    pki: Pki, message: bytes, cipher: CipherName, recipient_kind: str, inner: str
) -> None:
    """Each content cipher with RSA (OAEP or PKCS#1 v1.5) or ECDH recipients decrypts."""
    recipient = pki.council if recipient_kind == "ec" else pki.ministry
    options = ProtectOptions(cipher=cipher, inner_encoding=inner)  # type: ignore[arg-type]
    sent = protect(message, pki.agency.signer, [recipient.certificate], now=NOW, options=options)
    kind = "authEnveloped-data" if cipher.endswith("gcm") else "enveloped-data"
    assert f"smime-type={kind}".encode() in sent.message
    result = unprotect(
        sent.message,
        identities=[recipient.recipient],
        trust=pki.trust(),
        now=NOW,
        require_encryption=True,
    )
    assert result.content == message
    assert result.encryption is not None
    assert result.encryption.content_encryption == cipher
    expected = {
        ("rsa", True): "rsa-oaep-sha256",
        ("rsa", False): "rsa-pkcs1v15",
        ("ec", True): "ecdh-sha256kdf-aes256-wrap",
        ("ec", False): "ecdh-sha256kdf-aes256-wrap",
    }
    assert result.encryption.key_management == expected[(recipient_kind, cipher.endswith("gcm"))]


def test_several_recipients_each_open_it(pki: Pki, message: bytes) -> None:
    """A message for two gateways opens with either key, and not with a third's."""
    sent = protect(
        message, pki.agency.signer, [pki.ministry.certificate, pki.council.certificate], now=NOW
    ).message
    assert open_as(pki.ministry, pki, sent) == message
    assert open_as(pki.council, pki, sent) == message
    with pytest.raises(SmimeError) as refused:
        open_as(pki.agency, pki, sent)
    assert refused.value.reason is Reason.NOT_FOR_US


def test_outer_message_hides_subject_and_body(pki: Pki, message: bytes) -> None:
    """Only the routing fields appear outside; the subject and body are only inside."""
    sent = protect(message, pki.agency.signer, [pki.ministry.certificate], now=NOW).message
    header = sent.split(b"\r\n\r\n", 1)[0]
    assert b"Budget figures" not in sent
    assert b"The figures are attached" not in sent
    assert b"Subject: SecureMail message" in header
    for name in (
        b"From: Alice Example <alice@agency.govt.nz>",
        b"To: bob@ministry.govt.nz",
        b"Message-ID: <test-1@agency.govt.nz>",
        b"Date: ",
    ):
        assert name in header
    assert all(len(line) <= 998 for line in sent.split(b"\r\n"))


def test_label_and_receipt_request_travel_signed(pki: Pki, message: bytes) -> None:
    """The security label and receipt request come out exactly as they went in."""
    label = SecurityLabel("SENSITIVE", "PERSONAL")
    request = ReceiptRequest(b"content-id-1", ("gateway@agency.govt.nz",), first_tier_only=True)
    sent = protect(
        message,
        pki.agency.signer,
        [pki.ministry.certificate],
        now=NOW,
        options=ProtectOptions(label=label, receipt_request=request),
    )
    result = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert result.signature.label == label
    assert result.signature.receipt_request == request
    assert result.signature.signing_time == NOW
    assert sent.receipt_basis is not None
    assert sent.receipt_basis.content_identifier == b"content-id-1"


def test_lf_line_ends_are_signed_as_crlf(pki: Pki, message: bytes) -> None:
    """A message with Unix line ends is canonicalised to CRLF before signing (RFC 8551 §3.1.1)."""
    sent = protect(
        message.replace(b"\r\n", b"\n"), pki.agency.signer, [pki.ministry.certificate], now=NOW
    ).message
    assert open_as(pki.ministry, pki, sent) == message


def test_large_binary_body_round_trips(pki: Pki) -> None:
    """A 3 MiB message with every byte value in its body survives unchanged."""
    body = bytes(range(256)) * (3 * 4096)
    original = b"From: a@agency.govt.nz\r\nTo: b@ministry.govt.nz\r\n\r\n" + body.replace(
        b"\r", b""
    ).replace(b"\n", b"")
    sent = protect(original, pki.agency.signer, [pki.ministry.certificate], now=NOW).message
    assert open_as(pki.ministry, pki, sent) == original


def test_signed_only_message_verifies_but_not_where_encryption_required(
    pki: Pki, message: bytes
) -> None:
    """sign_message output verifies; with require_encryption it is refused as not-encrypted."""
    signed = sign_message(message, pki.agency.signer, now=NOW).message
    assert b"Subject: Budget figures for review" in signed.split(b"\r\n\r\n", 1)[0]
    result = unprotect(signed, identities=[], trust=pki.trust(), now=NOW)
    assert result.content == message
    assert result.encryption is None
    with pytest.raises(SmimeError) as refused:
        unprotect(signed, identities=[], trust=pki.trust(), now=NOW, require_encryption=True)
    assert refused.value.reason is Reason.NOT_ENCRYPTED


def test_intermediate_ca_sent_with_signature_builds_the_path(pki: Pki, message: bytes) -> None:
    """A signer under an intermediate CA validates when it sends the intermediate along."""
    intermediate_cert = _intermediate(pki)
    signer = issue(intermediate_cert, "gw", now=NOW, domains=["sub.govt.nz"])
    identity = SignerIdentity(
        signer.certificate, signer.private_key, (intermediate_cert.certificate,)
    )
    sent = protect(message, identity, [pki.ministry.certificate], now=NOW).message
    result = unprotect(
        sent,
        identities=[pki.ministry.recipient],
        trust=pki.trust(require_revocation=False),
        now=NOW,
    )
    assert [c.subject for c in result.path.certificates] == [
        signer.certificate.subject,
        intermediate_cert.certificate.subject,
        pki.ca.certificate.subject,
    ]


def _intermediate(pki: Pki) -> Issued:
    """An intermediate CA under the test federation root (path length 0)."""
    key = generate_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Intermediate CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(pki.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(pki.ca.private_key, hashes.SHA256())
    )
    return Issued(cert, key)


def test_message_of_header_fields_only_round_trips(pki: Pki) -> None:
    """A message with no body and no blank line (RFC 5322 §3.5) is protected as it is."""
    original = b"From: a@agency.govt.nz\r\nTo: b@ministry.govt.nz\r\nSubject: see title\r\n"
    sent = protect(original, pki.agency.signer, [pki.ministry.certificate], now=NOW).message
    assert open_as(pki.ministry, pki, sent) == original


def test_canonical_promise_signs_bytes_unchanged(pki: Pki, message: bytes) -> None:
    """With canonical=True the CRLF message is signed without a rescan and opens identically."""
    sent = protect(
        message, pki.agency.signer, [pki.ministry.certificate], now=NOW, canonical=True
    ).message
    assert open_as(pki.ministry, pki, sent) == message


def test_garbage_instead_of_a_message_is_malformed(pki: Pki) -> None:
    """Input that is not an RFC 5322 message is refused before anything is signed."""
    with pytest.raises(SmimeError) as refused:
        protect(
            b"\x00\x01 not a header\r\n\r\nbody",
            pki.agency.signer,
            [pki.ministry.certificate],
            now=NOW,
        )
    assert refused.value.reason is Reason.MALFORMED


def test_clear_signed_notice_is_readable_and_verifies(pki: Pki) -> None:
    """A clear-signed notice shows its text to any client and verifies as the signer's."""
    notice = (
        b"From: postmaster@agency.govt.nz\r\nTo: a@agency.govt.nz\r\nSubject: Undelivered\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"Reason: from-not-authorised\r\n"
    )
    signed = clear_sign(notice, pki.agency.signer, now=NOW)
    assert b"Reason: from-not-authorised" in signed
    assert b"Subject: Undelivered" in signed.split(b"\r\n\r\n", 1)[0]
    opened = unprotect(signed, identities=[], trust=pki.trust(), now=NOW)
    assert opened.signature.signer == pki.agency.certificate
    assert opened.content.endswith(b"Reason: from-not-authorised\r\n")
    with pytest.raises(SmimeError):
        unprotect(
            signed.replace(b"from-not", b"from-yes"), identities=[], trust=pki.trust(), now=NOW
        )


def test_outer_marking_mirrors_the_label_on_the_outer_message(pki: Pki, message: bytes) -> None:
    """The outer message shows the protective marking; the label itself is signed inside."""
    options = ProtectOptions(
        label=SecurityLabel("IN-CONFIDENCE"), outer_marking="SEC=IN-CONFIDENCE"
    )
    sent = protect(message, pki.agency.signer, [pki.ministry.certificate], now=NOW, options=options)
    outer = sent.message.split(b"\r\n\r\n", 1)[0]
    assert b"X-Protective-Marking: SEC=IN-CONFIDENCE" in outer
    opened = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert opened.signature.label == SecurityLabel("IN-CONFIDENCE")
    with pytest.raises(ValueError, match="one short line"):
        ProtectOptions(outer_marking="SEC=IN-CONFIDENCE\r\nBcc: x@y")
