"""The conformance kit's test messages: what is sent to the gateway under test, and what
must come of each (a signed receipt, a refusal, a notice), with the profile requirements it
checks.

Pure: keys, the member's directory entry and ``now`` in, bytes out. The negative cases are
built from a valid message by one change each (:mod:`securemail.conformance.forgery`, a
signer from outside the federation or one the federation revoked, a From: the tester does
not own, no sealedFor, no S/MIME at all), so a gateway that takes one of them has skipped
exactly the check the case names. The downgrade cases apply only where the member's entry
makes them one: legacy CBC to a member listing ``aes256-gcm``, a signature without
sealedFor to a member listing ``sealed-for``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

from cryptography import x509

from securemail.conformance.forgery import rogue_signer, tamper, tamper_signed
from securemail.directory.model import Member
from securemail.smime import (
    ProtectOptions,
    ReceiptBasis,
    ReceiptRequest,
    SealedFor,
    SignerIdentity,
    protect,
)
from securemail.smime.algorithms import CipherName
from securemail.smime.labels import SecurityLabel

Expect = Literal["receipt", "refused", "refused-at-data", "notice"]
REFUSAL = ("SM-FAIL-1", "SM-FAIL-2")
RECEIPTED = ("SM-RECV-1", "SM-RECV-5", "SM-RCPT-1", "SM-RCPT-2", "SM-RCPT-3")


@dataclass(frozen=True)
class Case:
    """One test message: ``wire`` goes to ``recipient`` from ``mail_from``; ``expect`` says
    what a conforming gateway does with it, ``requirements`` which ids that checks (for a
    refusal, the first is the check it must not skip)."""

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
    downgrade: bool = False  # answered as the directory says, not as this message was sent


@dataclass(frozen=True)
class Tester:
    """The identity the federation operator admitted for testing: its domain and keys, and
    optionally a signing certificate of its own that the federation revoked for the kit."""

    org_id: str
    domain: str
    signer: SignerIdentity
    revoked: SignerIdentity | None = None

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


@dataclass(frozen=True)
class _Spec:
    """One case to build: what it is, what must come of it, and its one change."""

    name: str
    title: str
    expect: Expect
    requirements: tuple[str, ...]
    author: str | None = None  # From:, if not the tester's own address
    signer: SignerIdentity | None = None  # if not the tester's signing identity
    cipher: CipherName = "aes256-gcm"
    sealed: bool = True
    recipient: str | None = None  # if not the test mailbox
    forge: Literal["", "ciphertext", "signature"] = ""
    label: SecurityLabel | None = None


@dataclass(frozen=True)
class _Maker:
    """Builds one case's message: the run's id, the member, its recipient and certificate."""

    tester: Tester
    member: Member
    recipient: str
    encryption: x509.Certificate
    now: datetime
    run_id: str

    def make(self, spec: _Spec) -> Case:
        to = spec.recipient or self.recipient
        message_id = f"<conformance-{self.run_id}-{spec.name}@{self.tester.domain}>"
        marker = f"Conformance case {spec.name} {self.run_id}: never to appear in a notice."
        author = spec.author or self.tester.address
        content = _message(author, to, message_id, spec.title, marker, now=self.now)
        options = ProtectOptions(
            cipher=spec.cipher,
            label=spec.label,
            receipt_request=ReceiptRequest(secrets.token_bytes(16), (self.tester.receipts_to,)),
            sealed_for=SealedFor(self.member.org_id, (to,)) if spec.sealed else None,
        )
        identity = spec.signer or self.tester.signer
        basis = None
        if spec.forge == "signature":
            wire = tamper_signed(content, identity, self.encryption, marker.encode(),
                                 now=self.now, options=options)  # fmt: skip
        else:
            protected = protect(content, identity, [self.encryption], now=self.now,
                                options=options)  # fmt: skip
            wire = tamper(protected.message) if spec.forge else protected.message
            basis = protected.receipt_basis
        return Case(spec.name, spec.title, message_id, self.tester.address, to, wire,
                    spec.expect, spec.requirements, marker, basis,
                    downgrade=spec.cipher != "aes256-gcm")  # fmt: skip


def _answered(member: Member, domain: str, run_id: str) -> list[_Spec]:
    """The cases a conforming gateway answers: with a receipt, or a notice."""
    if "aes256-gcm" in member.capabilities:
        title = "AES-256-CBC, RSA PKCS#1 v1.5 to a member listing aes256-gcm"
        cbc = _Spec("downgrade-cbc", title, "receipt", (*RECEIPTED, "SM-DIR-5"),
                    cipher="aes256-cbc")  # fmt: skip
    else:
        cbc = _Spec("valid-cbc", "signed, AES-256-CBC (legacy)", "receipt", RECEIPTED,
                    cipher="aes256-cbc")  # fmt: skip
    return [
        _Spec("valid-gcm", "signed, AES-256-GCM, receipt requested", "receipt", RECEIPTED),
        _Spec("labelled", "labelled IN-CONFIDENCE (an ESS securityLabel)", "receipt",
              RECEIPTED, label=SecurityLabel("IN-CONFIDENCE")),
        cbc,
        _Spec("unknown-mailbox", "to a mailbox the member does not have", "notice",
              ("SM-FAIL-3", "SM-FAIL-2"), recipient=f"conformance-{run_id}@{domain}"),
    ]  # fmt: skip


def _refused(tester: Tester, member: Member, domain: str, now: datetime) -> list[_Spec]:
    """The cases a conforming gateway refuses, each by one check (and answers with
    nothing: none is from a sender it verified)."""
    rogue = rogue_signer(tester.org_id, tester.domain, now)
    specs = [
        _Spec("tampered", "AES-GCM ciphertext with one byte changed", "refused",
              ("SM-RECV-2", *REFUSAL), forge="ciphertext"),
        _Spec("tampered-signed", "signed content changed, then encrypted afresh", "refused",
              ("SM-RECV-5", *REFUSAL), forge="signature"),
        _Spec("wrong-signer", "signed by a certificate the federation never issued",
              "refused", ("SM-RECV-5", *REFUSAL), signer=rogue),
        _Spec("from-not-owned", "From: an address in the member's domain", "refused",
              ("SM-RECV-6", *REFUSAL), author=f"conformance@{domain}"),
    ]  # fmt: skip
    if tester.revoked is not None:
        specs.append(_Spec("revoked", "signed by a certificate on the federation's CRL",
                           "refused", ("SM-DIR-3", *REFUSAL), signer=tester.revoked))  # fmt: skip
    if "sealed-for" in member.capabilities:
        specs.append(_Spec("unsealed", "no sealedFor, from a signer listing sealed-for",
                           "refused", ("SM-SEAL-2", *REFUSAL), sealed=False))  # fmt: skip
    return specs


def build_cases(
    tester: Tester, member: Member, recipient: str, encryption: x509.Certificate, now: datetime
) -> list[Case]:
    """Every case that applies to ``member``, addressed to ``recipient`` there and encrypted
    to the member's ``encryption`` certificate."""
    run_id = secrets.token_hex(6)
    maker = _Maker(tester, member, recipient, encryption, now, run_id)
    domain = recipient.rpartition("@")[2]
    specs = [*_answered(member, domain, run_id), *_refused(tester, member, domain, now)]
    cases = [maker.make(spec) for spec in specs]
    mid = f"<conformance-{run_id}-plaintext@{tester.domain}>"
    marker = f"Conformance case plaintext {run_id}."
    plain = _message(tester.address, recipient, mid, "plaintext", marker, now=now)
    cases.append(Case("plaintext", "a plain, unsigned message", mid, tester.address,
                      recipient, plain, "refused-at-data", ("SM-RECV-3",), marker))  # fmt: skip
    return cases
