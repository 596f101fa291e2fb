"""Pure checks and edits of a message at the end of DATA: line ends, hops, S/MIME type, trace.

Nothing here parses MIME: the receive services only scan the top-level header section,
cheaply and with a bound on the work; the queue workers verify the S/MIME content later.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from email.utils import format_datetime

from securemail.receive.model import ReceiveReason
from securemail.replies import Reply

MAX_RECEIVED_FIELDS = 30

_LINE_END = re.compile(rb"\r\n|\r|\n")
_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_CONTENT_TYPE = re.compile(rb"^content-type[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_PROTOCOL_PARAMETER = re.compile(rb';\s*protocol\s*=\s*"?([^";\s]+)"?', re.IGNORECASE)
_HELO = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,255}")

_ENVELOPED = {b"application/pkcs7-mime", b"application/x-pkcs7-mime"}
_SIGNATURE = {b"application/pkcs7-signature", b"application/x-pkcs7-signature"}


def normalise_line_ends(body: bytes) -> bytes:
    """Every CRLF, bare CR and bare LF becomes CRLF.

    THREATS.md B (SMTP smuggling): a bare CR or LF that some later server reads as a line
    end could let ``<LF>.<LF>`` end DATA there; after this, what we relay onward has only
    CRLF line ends, and the sending client's dot-stuffing (RFC 5321 §4.5.2) covers them.
    """
    crlf = body.count(b"\r\n")
    if body.count(b"\r") == crlf and body.count(b"\n") == crlf:
        return body  # every CR begins a CRLF and every LF ends one: already canonical
    return _LINE_END.sub(b"\r\n", body)


def header_section(body: bytes) -> bytes:
    """The top-level header fields of a CRLF-normalised message (up to the empty line)."""
    if body.startswith(b"\r\n"):
        return b""
    end = body.find(b"\r\n\r\n")
    return body if end < 0 else body[: end + 2]


def check_hops(header: bytes) -> Reply | None:
    """Refuse a message that has already passed more than 30 hops (RFC 5321 §6.3)."""
    hops = len(_RECEIVED.findall(header))
    if hops <= MAX_RECEIVED_FIELDS:
        return None
    detail = f"{hops} Received: fields, more than {MAX_RECEIVED_FIELDS}"
    return Reply(554, "5.4.6", "Mail loop detected", ReceiveReason.LOOP, detail)


def _media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def _printable(value: bytes) -> str:
    """Untrusted header text made safe for one log line (control characters escaped)."""
    return value[:80].decode("latin-1").encode("unicode_escape").decode("ascii")


def _is_smime(value: bytes) -> bool:
    media_type = _media_type(value)
    if media_type in _ENVELOPED:
        return True
    if media_type != b"multipart/signed":
        return False
    protocol = _PROTOCOL_PARAMETER.search(value)
    return protocol is not None and protocol.group(1).lower() in _SIGNATURE


def check_smime_type(header: bytes) -> Reply | None:
    """Refuse a message whose one top-level Content-Type is not an S/MIME entity.

    Accepted: application/(x-)pkcs7-mime (RFC 8551 §3.2), or multipart/signed with an
    application/(x-)pkcs7-signature protocol (RFC 8551 §3.5.3). None or several
    Content-Type fields are refused: readers disagree on which one counts.
    """
    values = _CONTENT_TYPE.findall(_FOLD.sub(b"", header))
    if len(values) == 1 and _is_smime(values[0]):
        return None
    if len(values) == 1:
        detail = "top-level type " + _printable(_media_type(values[0]))
    else:
        detail = f"{len(values)} top-level Content-Type fields"
    text = "SecureMail peers must send S/MIME-protected mail"
    return Reply(554, "5.7.1", text, ReceiveReason.NOT_PROTECTED, detail)


def with_protocol(*, extended: bool, tls: bool, authenticated: bool) -> str:
    """The ``with`` keyword of the trace field (RFC 3848: ESMTP, ESMTPS, ESMTPA, ESMTPSA)."""
    if not extended:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def _address_literal(ip: str) -> str:
    # RFC 5321 §4.1.3: IPv6 literals carry the "IPv6:" tag.
    return f"[IPv6:{ip}]" if ipaddress.ip_address(ip).version == 6 else f"[{ip}]"


def trace_field(helo: str, ip: str, hostname: str, protocol: str, now: datetime) -> bytes:
    """Our ``Received:`` field (RFC 5321 §4.4), folded, ending in CRLF.

    The client's HELO name is untrusted: anything but domain or literal characters is
    written as "invalid" so it cannot forge the structure of the field.
    """
    name = helo if _HELO.fullmatch(helo) else "invalid"
    return (
        f"Received: from {name} ({_address_literal(ip)})\r\n"
        f"\tby {hostname} with {protocol};\r\n"
        f"\t{format_datetime(now)}\r\n"
    ).encode("ascii")
