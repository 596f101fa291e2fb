"""The profile's test vectors (docs/vectors/): made with SecureMail's code and throw-away keys.

Run from the repository root to write a fresh set (it refuses a folder that holds files)::

    python -m tests.support.vectors docs/vectors-new

The keys are made here, for the vectors only, and written beside them so that a vendor can
open every vector with ``openssl``: they are TEST-ONLY (the file names say so), belong to
no real identity, and must never be trusted by a gateway. Every vector is dated
``VECTOR_TIME``; check them with ``openssl … -attime`` and ``now=VECTOR_TIME``.

Files (each CMS object also as hex of its DER, for ASN.1 tools):

    message.eml               the original message (the signed content), CRLF
    protected.eml             the message on the wire (profile §1): AES-256-GCM, RSA-OAEP-SHA256
    inner.eml                 its decrypted inner entity: SignedData, base64 (profile §1, §2)
    signed-data.der.hex       that SignedData's DER, hex
    receipt.der.b64 / .hex    the receiver's ESS signed receipt for it (profile §6)
    receipt-message.eml       the receipt message's signed content (profile §12)
    failure-notice.eml        a failure notice's signed content, from-not-authorised (§13)
    TEST-ONLY-*.pem, *.key    the federation root, the CRL, the sender's and receiver's keys
"""

from __future__ import annotations

import base64
import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from securemail import notices
from securemail.evidence import Evidence, receipt_message
from securemail.pki.authority import Issued, issue, make_crl, make_root_ca, private_key_pem
from securemail.smime import (
    ProtectOptions,
    ReceiptRequest,
    RecipientIdentity,
    SignerIdentity,
    TrustStore,
    make_receipt,
    protect,
    unprotect,
)
from securemail.smime.decrypt import decrypt
from securemail.smime.limits import Limits
from securemail.smime.mime import decode_body, header_fields, split_header

VECTOR_TIME = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SENDER, RECEIVER = "sender.example.nz", "receiver.example.nz"
CONTENT_IDENTIFIER = bytes.fromhex("00112233445566778899aabbccddeeff")
MESSAGE = (
    f"From: Alice Sender <alice@{SENDER}>\r\n"
    f"To: bob@{RECEIVER}\r\n"
    "Subject: [IN-CONFIDENCE] Test vector\r\n"
    "Date: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
    f"Message-ID: <vector-1@{SENDER}>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "A SecureMail profile test vector.\r\n"
).encode("ascii")


def _gateway(ca: Issued, domain: str) -> Issued:
    return issue(
        ca, f"TEST-ONLY gateway {domain}", now=VECTOR_TIME, domains=[domain],
        emails=[f"gateway@{domain}"],
    )  # fmt: skip


def _write(out: Path, name: str, data: bytes) -> None:
    (out / name).write_bytes(data)


def _hex(data: bytes) -> bytes:
    """Hex in lines of 32 octets, for people and ASN.1 tools (``xxd -r -p`` reads it)."""
    text = data.hex()
    return "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64)).encode("ascii")


def inner_entity(protected: bytes, receiver: RecipientIdentity) -> bytes:
    """The decrypted inner entity of a protected message."""
    block, body = split_header(protected, Limits())
    envelope = decode_body(header_fields(block, Limits()), body)
    inner, _ = decrypt(envelope, [receiver])
    return inner


def write_vectors(out: Path) -> None:
    """Write a fresh set of vectors and their TEST-ONLY keys into the empty folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SystemExit(f"{out} is not empty")
    ca = make_root_ca("SecureMail TEST-ONLY vector root", now=VECTOR_TIME)
    sender, receiver = _gateway(ca, SENDER), _gateway(ca, RECEIVER)
    crl = make_crl(ca, [], now=VECTOR_TIME, next_update_days=3650)
    trust = TrustStore([ca.certificate], [crl])
    request = ReceiptRequest(CONTENT_IDENTIFIER, (f"securemail-receipts@{SENDER}",))
    protected = protect(
        MESSAGE,
        SignerIdentity(sender.certificate, sender.private_key),
        [receiver.certificate],
        now=VECTOR_TIME,
        options=ProtectOptions(receipt_request=request),
    )
    receiving = RecipientIdentity(receiver.certificate, receiver.private_key)
    opened = unprotect(protected.message, identities=[receiving], trust=trust, now=VECTOR_TIME)
    receipt = make_receipt(
        opened.signature,
        SignerIdentity(receiver.certificate, receiver.private_key),
        now=VECTOR_TIME,
    )
    assert protected.signed_data is not None  # a receipt was requested
    files = {
        "message.eml": MESSAGE,
        "protected.eml": protected.message,
        "inner.eml": inner_entity(protected.message, receiving),
        "signed-data.der.hex": _hex(protected.signed_data),
        "receipt.der.b64": base64.encodebytes(receipt),
        "receipt.der.hex": _hex(receipt),
        "receipt-message.eml": _receipt_message(receipt),
        "failure-notice.eml": _failure_notice(protected.message),
        "TEST-ONLY-federation-ca.pem": ca.certificate_pem(),
        "TEST-ONLY-crl.pem": crl.public_bytes(serialization.Encoding.PEM),
        "TEST-ONLY-sender.pem": sender.certificate_pem(),
        "TEST-ONLY-sender.key": private_key_pem(sender.private_key, None),
        "TEST-ONLY-receiver.pem": receiver.certificate_pem(),
        "TEST-ONLY-receiver.key": private_key_pem(receiver.private_key, None),
    }
    for name, data in files.items():
        _write(out, name, data)


def _receipt_message(receipt: bytes) -> bytes:
    evidence = Evidence(
        original_message_id=f"<vector-1@{SENDER}>",
        content_digest="sha256:" + hashlib.sha256(MESSAGE).hexdigest(),
        content_identifier=CONTENT_IDENTIFIER.hex(),
        recipient=f"bob@{RECEIVER}",
        delivered_at=VECTOR_TIME,
        receiving_org="receiver",
        receiving_gateway=f"mx.{RECEIVER}",
    )
    return receipt_message(
        receipt_der=receipt,
        evidence=evidence,
        sender=f"postmaster@{RECEIVER}",
        to=f"securemail-receipts@{SENDER}",
        now=VECTOR_TIME,
        message_id_domain=RECEIVER,
    )


def _failure_notice(protected: bytes) -> bytes:
    failed = notices.Failed(f"bob@{RECEIVER}", "5.7.0", "from-not-authorised", "")
    return notices.failure_notice(
        original_header=notices.original_header(protected),
        reporting_mta=f"mx.{RECEIVER}",
        postmaster=f"postmaster@{RECEIVER}",
        to=f"alice@{SENDER}",
        failed=[failed],
        now=VECTOR_TIME,
        message_id_domain=RECEIVER,
    )


if __name__ == "__main__":
    write_vectors(Path(sys.argv[1]))
