"""What the gateway under test sends back, opened as a member opens it and checked for form.

Every message is decrypted with the tester's keys and verified against the anchor and the
directory's CRLs (:func:`securemail.smime.unprotect`); then its form is checked: the outer
header (SM-SEND-1), the inner encoding (SM-SEND-3), the signature (SM-SEND-4), the signer
(SM-SEND-5), the encryption (SM-SEND-6, SM-DIR-4), and for a notice the RFC 3464 form of
profile §13 (SM-FAIL-3) quoting only signed routing fields (SM-FAIL-2).

Security: all of it is untrusted input; only the strict readers of the project parse it,
and the RFC 3464 parts are looked at as bytes, never rendered or followed.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from securemail import addresses, notices
from securemail.directory.model import Directory, Member
from securemail.errors import SecureMailError
from securemail.evidence import EvidenceError, is_receipt_message, read_receipt_message
from securemail.smime import RecipientIdentity, TrustStore, Unprotected, unprotect
from securemail.smime.decrypt import decrypt
from securemail.smime.limits import Limits
from securemail.smime.message import OUTER_FIELDS
from securemail.smime.mime import decode_body, header_fields, split_header

Add = Callable[[str, str, bool, str], None]
_REASON = re.compile(rb"^X-SecureMail-Reason:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_DIGESTS = ("sha256", "sha384", "sha512")
_ROUTING = {name.lower() for name in OUTER_FIELDS}


@dataclass(frozen=True)
class Answer:
    """A message from the gateway under test, opened: a receipt or a notice for a case."""

    kind: str  # "receipt" or "notice"
    message_id: str | None  # the case's Message-ID it answers
    opened: Unprotected
    receipt: bytes = b""
    recipient: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Opener:
    """The tester's side of opening: its keys, trust, directory entry, and the member."""

    identities: tuple[RecipientIdentity, ...]
    trust: TrustStore
    directory: Directory
    tester: Member
    member: Member

    def wanted_cipher(self) -> str:
        """What the tester's directory entry asks senders to use (profile §11)."""
        return "aes256-gcm" if "aes256-gcm" in self.tester.capabilities else "aes256-cbc"


def open_answer(add: Add, opener: Opener, body: bytes, name: str, now: datetime) -> Answer | None:
    """Open one message the gateway sent (``name``: as the report's folder calls it)."""
    try:
        opened = unprotect(
            body,
            identities=opener.identities,
            trust=opener.trust,
            now=now,
            require_encryption=True,
        )
        author = addresses.author(opened.content)
    except SecureMailError as error:
        add("SM-SEND-4", name, False, f"what it sent does not open: {error.reason}")
        return None
    check_form(add, opener, body, opened=opened, domain=author.domain, name=name)
    if is_receipt_message(opened.content):
        try:
            receipt, evidence = read_receipt_message(opened.content)
        except EvidenceError as error:
            add("SM-RCPT-3", name, False, f"receipt message refused: {error.reason}")
            return None
        return Answer("receipt", evidence.original_message_id, opened, receipt, evidence.recipient)
    report = notices.read_failure_report(opened.content)
    if report is None:
        return None
    reason = _REASON.search(opened.content)
    code = "" if reason is None else reason.group(1).decode("ascii", "replace")
    return Answer("notice", report.original_message_id, opened, reason=code)


def check_form(
    add: Add, opener: Opener, body: bytes, *, opened: Unprotected, domain: str, name: str
) -> None:
    """SM-SEND-1/3/4/5/6 and SM-DIR-4 on one message the gateway under test sent us."""
    owns = domain in opener.member.domains
    signer_ok = owns and opener.directory.may_sign_for(opened.signature.signer, domain)
    add("SM-SEND-5", name, signer_ok, f"From: domain {domain}, signer listed: {signer_ok}")
    block = b"\r\n" + split_header(body, Limits())[0] + b"\r\n"
    subject = b"\r\nSubject: SecureMail message\r\n" in block
    said = "is" if subject else "is not"
    add("SM-SEND-1", name, subject, f"outer Subject {said} 'SecureMail message'")
    _check_protection(add, opener, body, opened, name)


def _check_protection(
    add: Add, opener: Opener, body: bytes, opened: Unprotected, name: str
) -> None:
    """SM-SEND-3/4/6/7 and SM-DIR-4: how it was signed, labelled and encrypted."""
    signature = opened.signature
    included = signature.signer in signature.certificates
    digest_ok = signature.digest_algorithm in _DIGESTS and included
    algorithms = f"{signature.digest_algorithm}, {signature.signature_algorithm}"
    certificate = "included" if included else "missing"
    add("SM-SEND-4", name, digest_ok, f"one signer, {algorithms}, certificate {certificate}")
    encryption = opened.encryption
    cipher = "" if encryption is None else encryption.content_encryption
    wanted = opener.wanted_cipher()
    add("SM-DIR-4", name, cipher == wanted, f"encrypted with {cipher}, directory says {wanted}")
    if encryption is not None:
        paired = encryption.key_management.startswith("rsa-oaep") or not cipher.endswith("gcm")
        add("SM-SEND-6", name, paired, f"{cipher} with {encryption.key_management}")
    label = signature.label
    if label is not None:  # the reader refuses any other policy, so this one parsed as §5
        add("SM-SEND-7", name, True, f"labelled {label.marking} under the SecureMail policy")
    binary = inner_encoding(opener.identities, body) == "binary"
    allowed = not binary or "inner-binary" in opener.tester.capabilities
    add("SM-SEND-3", name, allowed, f"inner entity {'binary' if binary else 'base64'}")


def inner_encoding(identities: tuple[RecipientIdentity, ...], body: bytes) -> str:
    """The Content-Transfer-Encoding of the decrypted inner entity."""
    block, content = split_header(body, Limits())
    inner, _ = decrypt(decode_body(header_fields(block, Limits()), content), identities)
    fields = header_fields(split_header(inner, Limits())[0], Limits())
    encoding = next((v for n, v in fields if n.lower() == "content-transfer-encoding"), b"")
    return encoding.decode("ascii", "replace").strip().lower() or "7bit"


def notice_problems(content: bytes, marker: str) -> list[str]:
    """What in a notice breaks profile §13; empty if it keeps to it."""
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # noqa: S101 (the default policy makes one)
    problems = []
    if message.get_content_type() != "multipart/report" or (
        message.get_param("report-type") != "delivery-status"
    ):
        problems.append(f"Content-Type {message.get_content_type()}, not a delivery-status report")
    if str(message.get("Auto-Submitted", "")).strip().lower() != "auto-replied":
        problems.append("no Auto-Submitted: auto-replied")
    if not str(message.get("From", "")).lower().count("postmaster@"):
        problems.append("not from postmaster@")
    if _REASON.search(content) is None:
        problems.append("no X-SecureMail-Reason")
    parts = [part.get_content_type() for part in message.iter_parts()]
    if "message/delivery-status" not in parts:
        problems.append(f"parts {', '.join(parts)}: no message/delivery-status")
    problems.extend(_quoted_problems(message, marker))
    return problems


def _quoted_problems(message: EmailMessage, marker: str) -> list[str]:
    """SM-FAIL-2: the quoted header part holds only signed routing fields, never the body."""
    problems = []
    if marker.encode() in message.as_bytes():
        problems.append("quotes the refused body")
    for part in message.iter_parts():
        if part.get_content_type() != "text/rfc822-headers":
            continue
        text = part.get_payload(decode=True) or b""
        assert isinstance(text, bytes)  # noqa: S101 (a leaf part decodes to bytes)
        names = {
            line.split(b":", 1)[0].strip().lower()
            for line in text.splitlines()
            if b":" in line and not line[:1].isspace()
        }
        extra = sorted(n.decode("ascii", "replace") for n in names - {n.encode() for n in _ROUTING})
        if extra:
            problems.append(f"quotes unsigned or non-routing fields: {', '.join(extra)}")
    return problems
