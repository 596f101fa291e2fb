"""Failure and delay notices: RFC 3464 delivery status notifications, built as bytes.

A notice is ``multipart/report; report-type=delivery-status`` (RFC 6522) with three parts:
a short text for people (each recipient, its SecureMail reason code and what it means),
``message/delivery-status`` (RFC 3464 §2: per-recipient Action, Status (RFC 3463) and the
remote reply, plus an ``X-SecureMail-Reason`` extension field, §2.4) and
``text/rfc822-headers`` with the header of the original message, never its body
(THREATS.md A). The gateway then signs the notice, and encrypts it for members, through the
ordinary protect path; this module only writes the bytes, with CRLF line ends throughout.

Security: the original header and the remote diagnostic are untrusted. The diagnostic loses
CR, LF and every control character before it is written; the original header is cut at its
first line that is not a header field, so no body line can follow it into the notice; the
MIME boundary is random and checked against every part.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

from securemail.smime import mime
from securemail.smime.errors import SmimeError
from securemail.smime.limits import Limits

_LIMITS = Limits()
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")  # RFC 3463 §2
_REASON = re.compile(r"[!-~]{1,64}")  # a code: visible ASCII, normally kebab-case
_FIELD_LINE = re.compile(rb"[!-9;-~]+:")  # RFC 5322 §3.6.8 field name and colon
_MAX_DIAGNOSTIC = 500  # characters of a remote reply kept (RFC 5321 §4.5.3.1.5: 512 a line)

EXPLANATIONS = {
    "malformed": "The message was not in a form SecureMail can process.",
    "too-large": "The message is larger than the receiving gateway accepts. Send less at once.",
    "not-encrypted": "The message arrived unencrypted, which the profile does not allow.",
    "not-signed": "The message was not signed by a SecureMail gateway.",
    "not-for-us": "The message was encrypted for a different gateway certificate.",
    "decrypt-failed": "The receiving gateway could not decrypt the message.",
    "integrity-failed": "The message was changed in transit and was refused.",
    "signature-invalid": "The signature did not match the message; it may have been altered.",
    "signer-count": "The message did not carry exactly one signature.",
    "untrusted-signer": "The signing certificate is not trusted by the federation.",
    "revoked": "A certificate involved has been revoked.",
    "revocation-unknown": "The revocation status of a certificate could not be checked.",
    "certificate-expired": "A certificate involved has expired.",
    "key-usage": "A certificate involved may not be used for this purpose.",
    "weak-algorithm": "The message used an algorithm too weak for the profile.",
    "unsupported-algorithm": "The message used an algorithm the receiver does not support.",
    "receipt-not-requested": "A receipt arrived for a message that did not ask for one.",
    "receipt-mismatch": "A receipt did not match the message it claimed to be for.",
    "bad-key": "A key involved is not usable.",
    "tls-unavailable": "The receiving gateway did not offer an encrypted connection.",
    "tls-pin-mismatch": "The receiving gateway did not present the certificate the "
    "directory lists for it.",
    "connect-failed": "The receiving gateway could not be reached.",
    "expired": "The message could not be delivered within the maximum time and was given up.",
    "not-a-member": "The recipient's organisation is not a member of the SecureMail federation.",
    "no-certificate": "No valid certificate is published for the recipient's organisation.",
    "from-not-authorised": "The sender's address is not one the signing organisation may use.",
    "relay-denied": "The receiving gateway refused to accept mail for this recipient.",
}
_GENERIC = "The message could not be delivered for the reason shown."
_ADVICE = {
    "failed": "Please check the address, or ask your SecureMail administrator for help "
    "quoting the reason code.",
    "delayed": "SecureMail will keep trying; you need do nothing yet. You will be told if the "
    "message cannot be delivered.",
}


@dataclass(frozen=True)
class Failed:
    """One recipient the message did not (yet) reach, and why."""

    recipient: str
    status: str  # RFC 3463 enhanced status, e.g. "5.7.1"
    reason: str  # SecureMail reason code, e.g. "tls-pin-mismatch"
    diagnostic: str = ""  # the remote reply line, untrusted; "" if none

    def __post_init__(self) -> None:
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"not an RFC 3463 status: {self.status!r}")
        if not _REASON.fullmatch(self.reason):
            raise ValueError(f"not a reason code: {self.reason!r}")
        _check_printable("recipient", self.recipient)


def _check_printable(name: str, value: str) -> None:
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"{name} must be non-empty printable text without spaces")


def original_header(message: bytes) -> bytes:
    """The header block of ``message`` for a ``text/rfc822-headers`` part: never its body.

    Reading stops at the first line that is not a header field or a continuation of one, so
    a message without the empty line (or with one made of a bare CR) gives no body away.
    """
    try:
        block, _ = mime.split_header(message, _LIMITS)
    except SmimeError:  # no empty line within the limit: read only the first part
        block = mime.canonicalize(message[: _LIMITS.max_header_bytes])
    kept: list[bytes] = []
    for line in block.split(mime.CRLF):
        continuation = line[:1] in (b" ", b"\t") and bool(kept)
        if not (continuation or _FIELD_LINE.match(line)):
            break
        kept.append(line + mime.CRLF)
    return b"".join(kept)


def failure_notice(
    *,
    original_header: bytes,
    reporting_mta: str,
    postmaster: str,
    to: str,
    failed: Sequence[Failed],
    now: datetime,
    action: Literal["failed", "delayed"] = "failed",
    message_id_domain: str,
    arrived: datetime | None = None,
) -> bytes:
    """A complete notice to ``to`` about ``failed`` recipients, dated ``now``.

    ``original_header`` is the result of :func:`original_header`; ``arrived``, when known, is
    when the original message was accepted (RFC 3464 §2.2.5 Arrival-Date).
    """
    for name, value in (("reporting_mta", reporting_mta), ("postmaster", postmaster)):
        _check_printable(name, value)
    _check_printable("to", to)
    _check_printable("message_id_domain", message_id_domain)
    if not failed:
        raise ValueError("a notice needs at least one recipient")
    parts = [
        _text_part(failed, action),
        _status_part(failed, action, reporting_mta, arrived),
        _headers_part(original_header),
    ]
    boundary = _boundary(parts)
    subject = "Undelivered" if action == "failed" else "Delayed"
    header = (
        f"From: Mail Delivery System <{postmaster}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject} SecureMail message\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <{secrets.token_hex(16)}@{message_id_domain}>\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834 §5: no automatic reply to this
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
        "\r\n\r\n"
    ).encode()
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + mime.CRLF + part + mime.CRLF for part in parts)
    return header + body + delimiter + b"--" + mime.CRLF


def _text_part(failed: Sequence[Failed], action: str) -> bytes:
    """The part for people: what happened to whom, and what to do."""
    opening = (
        "Your message could not be delivered to the recipients below."
        if action == "failed"
        else "Your message has not yet been delivered to the recipients below."
    )
    lines = [opening, ""]
    for entry in failed:
        lines += [
            f"  {entry.recipient}",
            f"    Reason: {entry.reason} ({entry.status})",
            f"    {EXPLANATIONS.get(entry.reason, _GENERIC)}",
        ]
        diagnostic = _clean(entry.diagnostic)
        lines += [f"    The receiving server said: {diagnostic}"] if diagnostic else []
        lines.append("")
    lines.append(_ADVICE[action])
    text = "\r\n".join(lines) + "\r\n"
    return _entity("text/plain; charset=utf-8", text.encode("utf-8"))


def _status_part(
    failed: Sequence[Failed], action: str, reporting_mta: str, arrived: datetime | None
) -> bytes:
    """``message/delivery-status``: one per-message block, one block per recipient."""
    blocks = [f"Reporting-MTA: dns; {reporting_mta}\r\n"]
    if arrived is not None:
        blocks[0] += f"Arrival-Date: {format_datetime(arrived)}\r\n"
    for entry in failed:
        block = (
            f"Final-Recipient: {address_type(entry.recipient)}\r\n"
            f"Action: {action}\r\nStatus: {entry.status}\r\n"
        )
        if diagnostic := _clean(entry.diagnostic).encode("ascii", "replace").decode("ascii"):
            block += f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        blocks.append(block + f"X-SecureMail-Reason: {entry.reason}\r\n")
    return _entity("message/delivery-status", "\r\n".join(blocks).encode("ascii"))


def address_type(address: str) -> str:
    """RFC 3464 §2.3.2 address: ``rfc822``, or RFC 6533 §3 ``utf-8`` with \\x{..} escapes."""
    if address.isascii():
        return f"rfc822; {address}"
    escaped = "".join(c if c.isascii() and c != "\\" else f"\\x{{{ord(c):X}}}" for c in address)
    return f"utf-8; {escaped}"


def _headers_part(header: bytes) -> bytes:
    return _entity("text/rfc822-headers", header if header else b"\r\n")


def _entity(content_type: str, content: bytes) -> bytes:
    encoding = "7bit" if content.isascii() else "8bit"
    head = f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    return head.encode("ascii") + content


def _clean(diagnostic: str) -> str:
    """A remote reply made safe to quote: no CR, LF or control characters, one line, bounded."""
    printable = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in diagnostic)
    return " ".join(printable.split())[:_MAX_DIAGNOSTIC]


def _boundary(parts: list[bytes]) -> str:
    """A random boundary that occurs in no part (RFC 2046 §5.1.1)."""
    while True:
        boundary = "=_securemail_" + secrets.token_hex(16)
        if not any(boundary.encode("ascii") in part for part in parts):
            return boundary


_ACTION_FAILED = re.compile(rb"^Action:\s*failed\s*$", re.IGNORECASE | re.MULTILINE)
_FINAL = re.compile(rb"^Final-Recipient:\s*rfc822;\s*([^\s;]+)\s*$", re.IGNORECASE | re.MULTILINE)
_ORIGINAL_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]{1,250}>)\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class FailureReport:
    """What a received failure notice says: the original's Message-ID and who failed."""

    original_message_id: str
    failed: frozenset[str]  # lower-case addresses whose block says ``Action: failed``


def read_failure_report(message: bytes) -> FailureReport | None:
    """Read a delivery-status report (ours or a peer's); None if it is not one, or says no
    failure. Tolerant and bounded: it decides nothing by itself (the caller checks who
    signed it and for which domains)."""
    head, _, body = message.partition(b"\r\n\r\n")
    if b"report-type=delivery-status" not in head.lower():
        return None
    failed = frozenset(
        address.decode("ascii", "replace").lower()
        for block in re.split(rb"\r\n\r\n", body[: 1 << 20])
        if _ACTION_FAILED.search(block)
        for address in _FINAL.findall(block)
    )
    original = _ORIGINAL_ID.findall(body)
    if not failed or not original:
        return None
    return FailureReport(original[-1].decode("ascii"), failed)


def message_id(message: bytes) -> str | None:
    """The Message-ID of ``message`` as its header says (tolerant scan, at most 250 chars)."""
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode("ascii", "replace")[:250] or None
    return None
