"""The receipt message a receiving gateway sends back to the sending gateway, built and read.

A receipt message is an RFC 5322 message marked ``X-SecureMail-Kind: signed-receipt`` and
``Auto-Submitted: auto-replied`` (RFC 3834 §5) whose body is ``multipart/mixed`` with three
parts: a short text for people, the ESS signed receipt as an
``application/pkcs7-mime; smime-type=signed-receipt`` entity (RFC 2634 §2.4, RFC 8551 §3.2)
and the :class:`~securemail.evidence.Evidence` as ``application/json``. The gateway then
signs and encrypts it like any SecureMail message; this module only writes and reads the
bytes, with CRLF line ends throughout.

Security: :func:`read_receipt_message` reads what another organisation wrote. It caps the
whole message before parsing, requires the kind field, takes exactly one receipt and one
JSON part (each capped) besides at most one text, and raises only :class:`EvidenceError`.
The builders refuse any header value with white space or control characters, so no value
can add a header field; the MIME boundary is random and checked against every part.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from securemail.evidence import Evidence, EvidenceError, EvidenceReason
from securemail.smime import mime, receipt_entity
from securemail.smime.errors import Reason, SmimeError
from securemail.smime.limits import Limits

RECEIPT_KIND = "signed-receipt"
KIND_FIELD = "X-SecureMail-Kind"
SUBJECT = "SecureMail delivery receipt"
MAX_RECEIPT_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 256 * 1024
_LIMITS = Limits(max_message_bytes=MAX_MESSAGE_BYTES, max_header_fields=200)
_MAX_LINE = 998  # RFC 5322 §2.1.1: longer lines go base64


def receipt_message(
    *,
    receipt_der: bytes,
    evidence: Evidence,
    sender: str,
    to: str,
    now: datetime,
    message_id_domain: str,
) -> bytes:
    """The receipt message from ``sender`` to ``to`` (the ESS receiptsTo address)."""
    for name, value in (("sender", sender), ("to", to), ("domain", message_id_domain)):
        check_token(name, value)
    if not 0 < len(receipt_der) <= MAX_RECEIPT_BYTES:
        raise ValueError(f"a receipt must be 1..{MAX_RECEIPT_BYTES} bytes")
    parts = [
        entity("text/plain; charset=utf-8", _explanation(evidence).encode("utf-8")),
        receipt_entity(receipt_der),
        entity("application/json", evidence.to_json()),
    ]
    boundary, body = frame_parts(parts)
    header = message_header(
        from_field=sender,
        to=to,
        subject=SUBJECT,
        now=now,
        message_id_domain=message_id_domain,
        content_type=f'multipart/mixed; boundary="{boundary}"',
        extra=((KIND_FIELD, RECEIPT_KIND),),
    )
    return header + body


def _explanation(evidence: Evidence) -> str:
    """What the receipt proves and what it does not, in plain words."""
    org, when = evidence.receiving_org, evidence.delivered_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    message = evidence.original_message_id or "(a message without a Message-ID)"
    lines = [
        f"This is a SecureMail delivery receipt from {org} (gateway {evidence.receiving_gateway}).",
        "",
        f"The message {message} was delivered to {evidence.recipient} at {when},",
        f"after the gateway of {org} decrypted it and verified its signature.",
        "",
        "The attached smime.p7m is the signed receipt (RFC 2634): the receiving gateway's",
        "signature, bound to the signature of the original message so that it cannot be",
        "moved to another message. The JSON part states the same facts for programs.",
        "",
        "This is not a read receipt: it does not show that anyone opened or read the message.",
    ]
    return "\r\n".join(lines) + "\r\n"


def read_receipt_message(message: bytes) -> tuple[bytes, Evidence]:
    """The receipt (DER) and evidence in a receipt message; anything else is refused."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise EvidenceError(EvidenceReason.TOO_LARGE, f"receipt message of {len(message)} bytes")
    try:
        block, body = mime.split_header(message, _LIMITS)
        fields = mime.header_fields(block, _LIMITS)
        if _kind(fields) != RECEIPT_KIND:
            raise EvidenceError(EvidenceReason.WRONG_KIND, f"{KIND_FIELD} is not {RECEIPT_KIND}")
        mime_type, params = mime.content_type(fields)
        boundary = params.get("boundary", "").encode("ascii", "replace")
        if mime_type != "multipart/mixed" or not 1 <= len(boundary) <= 70:
            raise EvidenceError(EvidenceReason.MALFORMED, "not multipart/mixed with a boundary")
        receipt, document = _receipt_and_document(split_parts(mime.canonicalize(body), boundary))
    except SmimeError as exc:
        too_large = exc.reason is Reason.TOO_LARGE
        reason = EvidenceReason.TOO_LARGE if too_large else EvidenceReason.MALFORMED
        raise EvidenceError(reason, exc.detail) from None
    return receipt, Evidence.from_json(document)


def _receipt_and_document(parts: Sequence[bytes]) -> tuple[bytes, bytes]:
    """The one receipt and the one JSON document among ``parts`` (a text part is allowed)."""
    found: dict[str, list[bytes]] = {"receipt": [], "json": [], "text": []}
    for part in parts:
        block, content = mime.split_header(part, _LIMITS)
        fields = mime.header_fields(block, _LIMITS)
        mime_type, params = mime.content_type(fields)
        if mime_type in mime.PKCS7_MIME and params.get("smime-type", "").lower() == RECEIPT_KIND:
            found["receipt"].append(mime.decode_body(fields, content))
        elif mime_type == "application/json":
            found["json"].append(mime.decode_body(fields, content))
        elif mime_type == "text/plain":
            found["text"].append(content)
        else:
            raise EvidenceError(EvidenceReason.MALFORMED, f"unexpected {mime_type[:80]} part")
    counts = {kind: len(values) for kind, values in found.items()}
    if counts["receipt"] != 1 or counts["json"] != 1 or counts["text"] > 1:
        raise EvidenceError(EvidenceReason.MALFORMED, f"parts: {counts}")
    receipt = found["receipt"][0]
    if len(receipt) > MAX_RECEIPT_BYTES:
        raise EvidenceError(EvidenceReason.TOO_LARGE, f"receipt of {len(receipt)} bytes")
    if receipt[:1] != b"\x30":  # a DER SEQUENCE: the ContentInfo (RFC 5652 §3)
        raise EvidenceError(EvidenceReason.MALFORMED, "the receipt part is not DER")
    return receipt, found["json"][0]


def is_receipt_message(message: bytes) -> bool:
    """Whether the header of ``message`` marks it as a receipt message (header only)."""
    try:
        block, _ = mime.split_header(message, Limits())
        return _kind(mime.header_fields(block, Limits())) == RECEIPT_KIND
    except SmimeError:
        return False


def _kind(fields: mime.Fields) -> str:
    value = mime.field(fields, KIND_FIELD)
    return "" if value is None else value.decode("ascii", "replace").strip().lower()


def split_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts of a CRLF multipart body (RFC 2046 §5.1.1), up to its close delimiter."""
    delimiter = re.compile(rb"(?:\A|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None  # None until the first delimiter: before it is the preamble
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
        if match.group(1):
            return parts
        start = match.end()
    raise EvidenceError(EvidenceReason.MALFORMED, "multipart body without its close delimiter")


def frame_parts(parts: Sequence[bytes]) -> tuple[str, bytes]:
    """(boundary, body): ``parts`` under a random boundary that occurs in none of them."""
    while True:
        boundary = "=_securemail_" + secrets.token_hex(16)
        if not any(boundary.encode("ascii") in part for part in parts):
            break
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + mime.CRLF + part + mime.CRLF for part in parts)
    return boundary, body + delimiter + b"--" + mime.CRLF


def entity(content_type: str, content: bytes) -> bytes:
    """A MIME part: 7bit or 8bit when every line is short enough, else base64."""
    if max(map(len, content.split(mime.CRLF))) > _MAX_LINE:
        encoding, content = "base64", mime.encode_base64(content)
    else:
        encoding = "7bit" if content.isascii() else "8bit"
    head = f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    return head.encode("ascii") + content


def message_header(
    *,
    from_field: str,
    to: str,
    subject: str,
    now: datetime,
    message_id_domain: str,
    content_type: str,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The header of an automatic reply (values already checked), ending in the empty line."""
    lines = [
        f"From: {from_field}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(now.astimezone(UTC))}",
        f"Message-ID: <{secrets.token_hex(16)}@{message_id_domain}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5: no automatic reply to this
        *(f"{name}: {value}" for name, value in extra),
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def check_token(name: str, value: str) -> None:
    """Refuse a header value that is empty or holds white space or control characters."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"{name} must be non-empty printable text without spaces")
