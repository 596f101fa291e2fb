"""The committed test vectors (docs/vectors/) still open and verify, in ours and in OpenSSL."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from securemail import notices
from securemail.evidence import read_receipt_message
from securemail.smime import (
    ReceiptBasis,
    RecipientIdentity,
    TrustStore,
    unprotect,
    verify_receipt,
)
from securemail.smime.keys import load_private_key
from tests.conftest import require_tool
from tests.support.vectors import CONTENT_IDENTIFIER, VECTOR_TIME, inner_entity, write_vectors

VECTORS = Path(__file__).parents[2] / "docs" / "vectors"
ATTIME = str(int(VECTOR_TIME.timestamp()))


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def _trust() -> TrustStore:
    ca = x509.load_pem_x509_certificate(vector("TEST-ONLY-federation-ca.pem"))
    crl = x509.load_pem_x509_crl(vector("TEST-ONLY-crl.pem"))
    return TrustStore([ca], [crl])


def _receiver() -> RecipientIdentity:
    cert = x509.load_pem_x509_certificate(vector("TEST-ONLY-receiver.pem"))
    return RecipientIdentity(cert, load_private_key(vector("TEST-ONLY-receiver.key"), None))


def test_protected_vector_opens_to_the_message_in_ours() -> None:
    """SM-SEND-1/3/4/6, SM-RECV-1: protected.eml decrypts to inner.eml, verifies to message.eml."""
    opened = unprotect(
        vector("protected.eml"),
        identities=[_receiver()],
        trust=_trust(),
        now=VECTOR_TIME,
        require_encryption=True,
    )
    assert opened.content == vector("message.eml")
    assert opened.encryption is not None
    assert opened.encryption.content_encryption == "aes256-gcm"
    assert opened.signature.receipt_request is not None
    assert opened.signature.receipt_request.content_identifier == CONTENT_IDENTIFIER
    assert inner_entity(vector("protected.eml"), _receiver()) == vector("inner.eml")
    assert b"Content-Transfer-Encoding: base64" in vector("inner.eml")
    hex_der = bytes.fromhex(vector("signed-data.der.hex").decode())
    assert base64.b64decode(vector("inner.eml").split(b"\r\n\r\n", 1)[1]) == hex_der


def test_receipt_vectors_are_bound_to_the_message() -> None:
    """SM-RCPT-2/3: the receipt verifies against the vector's signature; the receipt message
    and the failure notice read back as the profile says."""
    opened = unprotect(
        vector("protected.eml"), identities=[_receiver()], trust=_trust(), now=VECTOR_TIME
    )
    receipt = base64.b64decode(vector("receipt.der.b64"))
    assert receipt == bytes.fromhex(vector("receipt.der.hex").decode())
    verify_receipt(receipt, ReceiptBasis.of(opened.signature), trust=_trust(), now=VECTOR_TIME)
    carried, evidence = read_receipt_message(vector("receipt-message.eml"))
    assert carried == receipt
    assert evidence.content_identifier == CONTENT_IDENTIFIER.hex()
    report = notices.read_failure_report(vector("failure-notice.eml"))
    assert report is not None and report.failed == {"bob@receiver.example.nz"}
    assert b"X-SecureMail-Reason: from-not-authorised" in vector("failure-notice.eml")
    assert b"A SecureMail profile test vector" not in vector("failure-notice.eml")


def test_vectors_open_with_openssl(tmp_path: Path) -> None:
    """SM-RECV-1, SM-RCPT-2: the README's OpenSSL commands decrypt, verify and check the receipt."""
    openssl = require_tool("openssl")

    def run(*args: str) -> None:
        done = subprocess.run(
            [openssl, *args], cwd=VECTORS, capture_output=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    inner, content, receipt = tmp_path / "inner.eml", tmp_path / "content.eml", tmp_path / "r.der"
    run("cms", "-decrypt", "-in", "protected.eml", "-recip", "TEST-ONLY-receiver.pem",
        "-inkey", "TEST-ONLY-receiver.key", "-out", str(inner))  # fmt: skip
    assert inner.read_bytes() == vector("inner.eml")
    run("cms", "-verify", "-in", "inner.eml", "-CAfile", "TEST-ONLY-federation-ca.pem",
        "-CAstore", "TEST-ONLY-crl.pem", "-crl_check", "-attime", ATTIME,
        "-out", str(content))  # fmt: skip
    assert content.read_bytes() == vector("message.eml")
    receipt.write_bytes(base64.b64decode(vector("receipt.der.b64")))
    run("cms", "-verify_receipt", str(receipt), "-rctform", "DER", "-in", "inner.eml",
        "-CAfile", "TEST-ONLY-federation-ca.pem", "-attime", ATTIME)  # fmt: skip


def test_regenerated_vectors_have_the_same_files_and_shapes(tmp_path: Path) -> None:
    """The generator still writes the committed set: same files, same MIME shapes."""
    write_vectors(tmp_path)
    committed = sorted(p.name for p in VECTORS.iterdir() if p.suffix not in {".md", ""})
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in ("protected.eml", "inner.eml", "receipt-message.eml", "failure-notice.eml"):
        fresh, old = (tmp_path / name).read_bytes(), vector(name)
        assert _content_type(fresh) == _content_type(old), name


def _content_type(message: bytes) -> bytes:
    head = message.split(b"\r\n\r\n", 1)[0]
    [line] = [x for x in head.split(b"\r\n") if x.lower().startswith(b"content-type:")]
    return line.split(b"boundary=")[0]


@pytest.mark.parametrize("name", ["TEST-ONLY-sender.key", "TEST-ONLY-receiver.key"])
def test_committed_keys_are_only_the_vectors_own(name: str) -> None:
    """The committed keys are marked TEST-ONLY and certified only by the TEST-ONLY vector root."""
    cert = x509.load_pem_x509_certificate(vector(name.replace(".key", ".pem")))
    assert "TEST-ONLY" in cert.subject.rfc4514_string()
    assert "TEST-ONLY" in cert.issuer.rfc4514_string()
