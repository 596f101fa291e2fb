"""The conformance kit's test messages: what is sent to the gateway under test, and what
must come of each (a signed receipt, or a refusal), with the profile requirements it checks.

Pure: keys, the directory entry and ``now`` in, bytes out. The negative cases are built
from a valid message by one change each (a flipped ciphertext byte, a signer from outside
the federation, a From: the tester does not own, no S/MIME at all), so a gateway that takes
one of them has skipped exactly the check the case names.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

from cryptography import x509

from securemail.pki.authority import issue, make_root_ca
from securemail.smime import (
    ProtectOptions,
    ReceiptBasis,
    ReceiptRequest,
    SignerIdentity,
    protect,
)
from securemail.smime.algorithms import CipherName
from securemail.smime.mime import CRLF, encode_base64

Expect = Literal["receipt", "refused", "refused-at-data"]


@dataclass(frozen=True)
class Case:
    """One test message: ``wire`` goes to ``recipient`` from ``mail_from``; ``expect`` says
    what a conforming gateway does with it, ``requirements`` which ids that checks."""

    name: str
    title: str
    message_id: str
    mail_from: str
    recipient: str
    wire: bytes
    expect: Expect
    requirements: tuple[str, ...]
    marker: str  # a line of the body: a notice that quotes it broke SM-FAIL-2
    basis: ReceiptBasis | None = None  # what the receipt must be bound to
    reason: str | None = None  # the reason code the notice must name, if one is required


@dataclass(frozen=True)
class Tester:
    """The identity the federation operator admitted for testing: its domain and keys."""

    org_id: str
    domain: str
    signer: SignerIdentity

    @property
    def address(self) -> str:
        return f"conformance@{self.domain}"

    @property
    def receipts_to(self) -> str:
        return f"securemail-receipts@{self.domain}"


def _message(
    author: str, recipient: str, message_id: str, title: str, marker: str, *, now: datetime
) -> bytes:
    lines = [
        f"From: {author}",
        f"To: {recipient}",
        f"Subject: SecureMail conformance test: {title}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        marker,
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def build_cases(
    tester: Tester, recipient: str, encryption: x509.Certificate, now: datetime
) -> list[Case]:
    """Every case, addressed to ``recipient`` and encrypted to the member's ``encryption``."""
    run_id = secrets.token_hex(6)
    target_domain = recipient.rpartition("@")[2]

    def make(
        name: str,
        title: str,
        *,
        author: str = tester.address,
        signer: SignerIdentity = tester.signer,
        cipher: CipherName = "aes256-gcm",
        receipt: bool = False,
    ) -> tuple[str, bytes, str, ReceiptBasis | None]:
        message_id = f"<conformance-{run_id}-{name}@{tester.domain}>"
        marker = f"Conformance case {name} {run_id}: this line must never appear in a notice."
        request = (
            ReceiptRequest(secrets.token_bytes(16), (tester.receipts_to,)) if receipt else None
        )
        protected = protect(
            _message(author, recipient, message_id, title, marker, now=now),
            signer,
            [encryption],
            now=now,
            options=ProtectOptions(cipher=cipher, receipt_request=request),
        )
        return message_id, protected.message, marker, protected.receipt_basis

    refusal = ("SM-FAIL-1", "SM-FAIL-2")
    cases = []
    valid: tuple[tuple[str, str, CipherName], ...] = (
        ("valid-gcm", "signed, AES-256-GCM, receipt requested", "aes256-gcm"),
        ("valid-cbc", "signed, AES-256-CBC (legacy), receipt requested", "aes256-cbc"),
    )
    for name, title, cipher in valid:
        mid, wire, marker, basis = make(name, title, cipher=cipher, receipt=True)
        checks: tuple[str, ...] = ("SM-RECV-1", "SM-RECV-5", "SM-RCPT-1", "SM-RCPT-2", "SM-RCPT-3")
        cases.append(Case(name, title, mid, tester.address, recipient, wire, "receipt", checks,
                          marker, basis))  # fmt: skip
    title = "AES-GCM ciphertext with one byte changed"
    mid, wire, marker, _ = make("tampered", title, receipt=True)
    checks = ("SM-RECV-2", *refusal)
    cases.append(Case("tampered", title, mid, tester.address, recipient, tamper(wire), "refused",
                      checks, marker))  # fmt: skip
    title = "signed by a certificate the federation never issued"
    mid, wire, marker, _ = make("wrong-signer", title, signer=rogue_signer(tester, now),
                                receipt=True)  # fmt: skip
    checks = ("SM-RECV-5", *refusal)
    cases.append(Case("wrong-signer", title, mid, tester.address, recipient, wire, "refused",
                      checks, marker, reason="untrusted-signer"))  # fmt: skip
    title = "From: an address in the member's domain, signed by the tester"
    mid, wire, marker, _ = make("from-not-owned", title, author=f"conformance@{target_domain}",
                                receipt=True)  # fmt: skip
    checks = ("SM-RECV-6", *refusal)
    cases.append(Case("from-not-owned", title, mid, tester.address, recipient, wire, "refused",
                      checks, marker, reason="from-not-authorised"))  # fmt: skip
    mid = f"<conformance-{run_id}-plaintext@{tester.domain}>"
    marker = f"Conformance case plaintext {run_id}."
    plain = _message(tester.address, recipient, mid, "plaintext", marker, now=now)
    cases.append(Case("plaintext", "a plain, unsigned message", mid, tester.address, recipient,
                      plain, "refused-at-data", ("SM-RECV-3",), marker))  # fmt: skip
    return cases


def tamper(wire: bytes) -> bytes:
    """``wire`` with one byte of its encrypted content flipped (the outer base64 re-made)."""
    head, _, body = wire.partition(CRLF + CRLF)
    envelope = bytearray(base64.b64decode(body))
    envelope[len(envelope) - 40] ^= 0x01  # inside the encrypted content, before the GCM tag
    return head + CRLF + CRLF + encode_base64(bytes(envelope))


def rogue_signer(tester: Tester, now: datetime) -> SignerIdentity:
    """A certificate in the tester's name from a root the federation never trusted."""
    root = make_root_ca("Conformance rogue root (not a federation anchor)", now=now)
    issued = issue(
        root, f"{tester.org_id} (rogue)", now=now, domains=[tester.domain],
        emails=[f"gateway@{tester.domain}"],
    )  # fmt: skip
    return SignerIdentity(issued.certificate, issued.private_key)
