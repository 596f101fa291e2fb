"""A stored message taken apart for reading: header, plain text, HTML and attachments.

Security: the message is untrusted (a user can APPEND anything over IMAP). It is parsed by
Python's ``email`` package, which never raises on malformed input but records defects; the
caller has already capped its size (:data:`securemail.web.maildir_view.MAX_MESSAGE`), and
here at most :data:`MAX_PARTS` parts are looked at. Nothing here is HTML-escaped or
sanitised: the templates escape text, :mod:`securemail.web.sanitise` cleans HTML, and
:func:`safe_filename` makes a name fit for a Content-Disposition header.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage, Message

from securemail.smime import mime
from securemail.smime.errors import SmimeError
from securemail.smime.limits import Limits

MAX_PARTS = 200
_LIMITS = Limits(max_header_bytes=256 * 1024, max_header_fields=1000)
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class Attachment:
    """One part offered for download: its position among the parts, name, type and size."""

    index: int
    filename: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Reading:
    """What the read page shows of a message (all text still to be escaped)."""

    subject: str
    sender: str
    to: str
    cc: str
    date: str
    message_id: str
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    fields: mime.Fields  # the raw header, for the verification panel
    receipt_requested: bool


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def header_fields(data: bytes) -> mime.Fields:
    """The raw header fields, in order (empty if the header cannot be read)."""
    try:
        block, _ = mime.split_header(data, _LIMITS)
        return mime.header_fields(block, _LIMITS)
    except SmimeError:
        return []


def take_apart(data: bytes) -> Reading:
    """The parts of ``data`` a reader sees (see the module doc)."""
    message = parse(data)
    text: str | None = None
    markup: str | None = None
    attachments: list[Attachment] = []
    for index, part in enumerate(_leaves(message)):
        kind = part.get_content_type()
        inline = not part.is_attachment() and part.get_filename() is None
        if inline and kind == "text/plain" and text is None:
            text = _content(part)
        elif inline and kind == "text/html" and markup is None:
            markup = _content(part)
        else:
            attachments.append(_attachment(index, part))
    return Reading(
        subject=header(message, "Subject"),
        sender=header(message, "From"),
        to=header(message, "To"),
        cc=header(message, "Cc"),
        date=header(message, "Date"),
        message_id=header(message, "Message-ID"),
        text=text,
        html=markup,
        attachments=tuple(attachments),
        fields=header_fields(data),
        receipt_requested=message.get("Disposition-Notification-To") is not None,
    )


def attachment(data: bytes, index: int) -> tuple[Attachment, bytes] | None:
    """The part at ``index`` (as :attr:`Attachment.index` numbers them) and its content."""
    for number, part in enumerate(_leaves(parse(data))):
        if number == index:
            return _attachment(index, part), _payload(part)
    return None


def header(message: Message, name: str) -> str:
    """A header as people read it: decoded, one line, control characters removed."""
    try:
        value = message.get(name)
        shown = "" if value is None else str(value)
    except (ValueError, LookupError, TypeError):  # a malformed field: show nothing
        shown = ""
    return "".join(c if _printable(c) else " " for c in " ".join(shown.split()))[:998]


def _leaves(message: EmailMessage) -> list[EmailMessage]:
    leaves: list[EmailMessage] = []
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            break
        if not part.is_multipart():
            leaves.append(part)
    return leaves


def _content(part: Message) -> str:
    raw = _payload(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", "replace")


def _payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _attachment(index: int, part: Message) -> Attachment:
    name = safe_filename(part.get_filename() or f"part-{index}")
    return Attachment(index, name, part.get_content_type(), len(_payload(part)))


def safe_filename(name: str) -> str:
    """``name`` reduced to letters, digits, ``._ -``: no path, quote or control character."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    plain = _UNSAFE.sub("_", plain.replace("/", "_").replace("\\", "_")).strip(" .")
    return plain[:100] or "attachment"


def _printable(char: str) -> bool:
    return unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp")
