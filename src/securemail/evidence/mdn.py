"""The delivery notice to the original sender: an RFC 8098 MDN that carries the evidence.

An MDN is ``multipart/report; report-type=disposition-notification`` (RFC 6522) with three
parts: a sentence for people, ``message/disposition-notification`` (RFC 8098 §3.2) with
disposition ``automatic-action/MDN-sent-automatically; processed`` and ``X-SecureMail-*``
extension fields (§3.3) holding the evidence, and ``text/rfc822-headers`` with the header of
the original, never its body (THREATS.md A). Ordinary mail clients show it as a return
receipt. The gateway signs it, and encrypts it for members, through the ordinary protect
path; this module only writes the bytes, with CRLF line ends throughout.

Security: the original header is untrusted; it is cut again at its first line that is not
a header field (:func:`securemail.notices.original_header`), so no body line can follow it.
Every other value is either checked here or an :class:`~securemail.evidence.Evidence`,
whose fields hold no white space or control characters where a header could break.
"""

from __future__ import annotations

from datetime import datetime

from securemail.evidence import Evidence, rfc3339
from securemail.evidence.message import check_token, entity, frame_parts, message_header
from securemail.notices import address_type
from securemail.notices import original_header as header_only

SUBJECT = "SecureMail delivery receipt"
DISPOSITION = "automatic-action/MDN-sent-automatically; processed"  # RFC 8098 §3.2.6


def mdn(
    *,
    original_header: bytes,
    reporting_mta: str,
    postmaster: str,
    to: str,
    evidence: Evidence,
    now: datetime,
    message_id_domain: str,
) -> bytes:
    """The MDN to ``to`` (the original sender) for one recipient's ``evidence``."""
    for name, value in (
        ("reporting_mta", reporting_mta),
        ("postmaster", postmaster),
        ("to", to),
        ("message_id_domain", message_id_domain),
    ):
        check_token(name, value)
    parts = [
        entity("text/plain; charset=utf-8", _sentence(evidence).encode("utf-8")),
        entity("message/disposition-notification", _notification(evidence, reporting_mta)),
        entity("text/rfc822-headers", header_only(original_header) or b"\r\n"),
    ]
    boundary, body = frame_parts(parts)
    content_type = f'multipart/report; report-type=disposition-notification; boundary="{boundary}"'
    header = message_header(
        from_field=f"Mail Delivery System <{postmaster}>",
        to=to,
        subject=SUBJECT,
        now=now,
        message_id_domain=message_id_domain,
        content_type=content_type,
    )
    return header + body


def _sentence(evidence: Evidence) -> str:
    when = evidence.delivered_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"{evidence.recipient} \N{EM DASH} delivered, decrypted and verified by "
        f"{evidence.receiving_org} at {when}.\r\n"
        "This is a delivery receipt, not a read receipt.\r\n"
    )


def _notification(evidence: Evidence, reporting_mta: str) -> bytes:
    """The ``message/disposition-notification`` fields (RFC 8098 §3.1, §3.3 extensions)."""
    fields = [
        f"Reporting-UA: {reporting_mta}; SecureMail",
        f"Final-Recipient: {address_type(evidence.recipient)}",
    ]
    if evidence.original_message_id is not None:
        fields.append(f"Original-Message-ID: {evidence.original_message_id}")
    fields += [
        f"Disposition: {DISPOSITION}",
        f"X-SecureMail-Content-Digest: {evidence.content_digest}",
        f"X-SecureMail-Content-Identifier: {evidence.content_identifier}",
        f"X-SecureMail-Receiving-Org: {evidence.receiving_org}",
        f"X-SecureMail-Receiving-Gateway: {evidence.receiving_gateway}",
        f"X-SecureMail-Delivered-At: {rfc3339(evidence.delivered_at)}",
    ]
    return ("\r\n".join(fields) + "\r\n").encode("utf-8")
