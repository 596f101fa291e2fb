"""Inbound marking: the trust fields a receiving gateway adds, after removing forged ones.

A verified message gets an ``Authentication-Results`` field (RFC 8601) with the ``smime``
method (registered by RFC 7281 §3; result "pass", or "none" for mail that did not come
through SecureMail) and our own ``X-SecureMail-Status`` and ``X-SecureMail-Signer`` fields.
Mail readers and filters downstream trust these fields, so any copy that arrived from
outside is removed first (RFC 8601 §5: a border MTA removes such fields it did not add).
Mail that came from outside SecureMail and claims a classification also gets a SEEMail-style
``X-SecureMail-Warning`` (issue 7 §4): a label in a header proves nothing.

Theory of operation. Only the header block is touched: it is found with the S/MIME layer's
strict reader (:func:`securemail.smime.mime.split_header`), so the header is CRLF-canonical
on output and the body bytes are returned exactly as they came. Header lines are grouped
into fields (a field with its folded continuation lines); a field is ours if its name,
compared without case and surrounding whitespace, is in :data:`TRUST_FIELDS` or starts with
``X-SecureMail-``. Continuation lines before the first field belong to no field and are
dropped, so that nothing we prepend can be continued by text from outside.

Security: the message, and everything in the :class:`Verdict` (organisation names and
addresses come from the directory and the message), are untrusted text. Values are written
as RFC 2045 tokens or quoted strings, display text as RFC 2047 encoded-words; CR, LF and
other control or format characters never reach a field; every line stays under 998 octets.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header

from securemail.smime import mime
from securemail.smime.assurance import SenderAssurance
from securemail.smime.errors import SmimeError
from securemail.smime.limits import Limits

TRUST_FIELDS = ("Authentication-Results", "X-SecureMail-Status", "X-SecureMail-Signer")
TRUST_PREFIX = "X-SecureMail-"

_OWNED = {name.lower() for name in TRUST_FIELDS}
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 2045 §5.1 token
_ADDRESS = re.compile(r"[!#$%&'*+\-/=?^_`{|}~.0-9A-Za-z]+@[-.0-9A-Za-z]+")  # RFC 8601 §2.2
_MAX_ID = 255
_MAX_DISPLAY = 200  # characters of an organisation name shown; longer names are cut
_LINE = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters

ORDINARY_REASON = "not-securemail"
WARNING_FIELD = "X-SecureMail-Warning"
WARNING = "NOT SecureMail: this message claims a classification but did not come through SecureMail"
_UNCLASSIFIED = "UNCLASSIFIED"  # a marking that claims no protection needs no warning
# A Subject marking such as "[SEC=IN-CONFIDENCE]" or "[IN-CONFIDENCE]" (NZ PSR email
# marking); the policy module has the full parser, this only has to notice a claim.
_SUBJECT_MARKING = re.compile(
    r"\[\s*(?:SEC\s*=\s*([^\],]*)|(IN-CONFIDENCE|SENSITIVE|RESTRICTED|CONFIDENTIAL"
    r"|SECRET|TOP\s+SECRET)\s*\])",
    re.IGNORECASE,
)
_SEC_VALUE = re.compile(r"\bSEC\s*=\s*([^,;]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """What the receiving gateway established about a verified message."""

    authserv_id: str  # this gateway's name (RFC 8601 §2.5), e.g. "gw.ministry.govt.nz"
    signer_org: str  # the directory id of the organisation whose certificate signed
    signer_name: str  # that organisation's name, for people
    from_address: str  # the author (see securemail.addresses.author)
    label: str | None = None  # the ESS security label's marking, e.g. "IN-CONFIDENCE"
    receipt: str | None = None  # e.g. "sent", "not-requested"
    # False when the signature does not name the recipients (a peer without the profile's
    # recipient binding, admitted by [peer] unsealed = "mark"): shown, never hidden.
    recipient_bound: bool = True
    # The signed sender assurance (profile §2.2), if any; ``assurance_problem`` names why it
    # is not believed (None: verified, the From: domain's provider said it); a warning when
    # it is below the receiving organisation's policy (docs/assurance.md).
    assurance: SenderAssurance | None = None
    assurance_problem: str | None = None
    assurance_warning: str | None = None

    def __post_init__(self) -> None:
        for name in ("authserv_id", "signer_org", "from_address", "label", "receipt"):
            value = getattr(self, name)
            if value is not None:
                _check_identifier(name, value)


def _check_identifier(name: str, value: str) -> None:
    """Identifiers are never rewritten (that could turn one into another): refuse bad ones."""
    if not 0 < len(value.encode("utf-8")) <= _MAX_ID or not _printable(value):
        raise ValueError(f"{name} must be 1 to {_MAX_ID} octets of printable text")


def _printable(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def strip_trust_fields(message: bytes) -> bytes:
    """``message`` without any field we own (any case, with its continuation lines)."""
    fields, rest = _header(message)
    return b"".join(field for field in fields if not _owned(field)) + rest


def mark_verified(message: bytes, verdict: Verdict) -> bytes:
    """Strip forged trust fields, then prepend the results of a successful verification."""
    status = ["verified", f"signer={_value(verdict.signer_org)}"]
    status += [f"label={_value(verdict.label)}"] if verdict.label is not None else []
    status += [f"receipt={_value(verdict.receipt)}"] if verdict.receipt is not None else []
    status += [] if verdict.recipient_bound else ["recipient=not-bound"]
    status += _assurance_status(verdict)
    results = [f"{_value(verdict.authserv_id)};", "smime=pass"]
    # RFC 8601 §2.7: a reason follows the result
    results += [] if verdict.recipient_bound else [f"reason={_quoted('recipient not bound')}"]
    results.append(f"header.from={_value(verdict.from_address)}")
    if verdict.assurance is not None:  # RFC 8601 §2.3: ptype "policy", a local property
        results.append(f"policy.assurance={_assurance_token(verdict)}")
    fields = (
        _fold("Authentication-Results", results)
        + _fold("X-SecureMail-Status", _separated(status))
        + _display_field("X-SecureMail-Signer", verdict.signer_name)
    )
    if verdict.assurance_warning is not None:
        fields += _display_field(WARNING_FIELD, verdict.assurance_warning)
    return fields + strip_trust_fields(message)


def _assurance_status(verdict: Verdict) -> list[str]:
    """The sender assurance items of X-SecureMail-Status (profile §2.2)."""
    value = verdict.assurance
    if value is None:
        return []
    if verdict.assurance_problem is not None:
        return ["assurance=unverified", f"assurance-reason={_value(verdict.assurance_problem)}"]
    items = ["assurance=verified", f"login={_value(value.login)}"]
    if value.sole_use_since is not None:
        items.append(f"sole-use-since={value.sole_use_since.date().isoformat()}")
    if value.identity is not None:
        items += [
            f"identity-level={_value(value.identity.level)}",
            f"identity-method={_value(value.identity.method)}",
            f"identity-verified={value.identity.verified_on.isoformat()}",
        ]
    items += [] if verdict.assurance_warning is None else ["assurance-policy=below"]
    return items


def _assurance_token(verdict: Verdict) -> str:
    """``unverified``, or the login with ``+sole-use`` and ``+identity`` as they hold."""
    value = verdict.assurance
    if value is None or verdict.assurance_problem is not None:
        return "unverified"
    # a login word that is no RFC 2045 token (a later profile's, or a bent one) is "unknown"
    token = value.login if _TOKEN.fullmatch(value.login) and "+" not in value.login else "unknown"
    token += "+sole-use" if value.sole_use_since is not None else ""
    return token + ("+identity" if value.identity is not None else "")


def mark_unverified(message: bytes, authserv_id: str, reason: str) -> bytes:
    """Strip forged trust fields, then say the message was not verified by SecureMail."""
    _check_identifier("authserv_id", authserv_id)
    _check_identifier("reason", reason)
    results = [f"{_value(authserv_id)};", "smime=none", f"reason={_quoted(reason)}"]
    fields = _fold("Authentication-Results", results) + _fold(
        "X-SecureMail-Status", _separated(["not-verified", f"reason={_value(reason)}"])
    )
    return fields + strip_trust_fields(message)


def mark_ordinary(message: bytes, authserv_id: str) -> bytes:
    """Mark mail that came from outside SecureMail: not verified, and :data:`WARNING` in an
    ``X-SecureMail-Warning`` field if it claims a classification. Only header fields change."""
    marked = mark_unverified(message, authserv_id, ORDINARY_REASON)
    if not claims_classification(message):
        return marked
    return _fold(WARNING_FIELD, WARNING.split()) + marked


def claims_classification(message: bytes) -> bool:
    """Whether the header claims a protective marking other than UNCLASSIFIED: any
    ``X-Protective-Marking`` field, or a Subject marking such as ``[SEC=IN-CONFIDENCE]``."""
    fields, _ = _header(message)
    for field in fields:
        name, _, value = field.partition(b":")
        name = name.strip().lower()
        if name == b"x-protective-marking":
            found = _SEC_VALUE.search(_text(value))
            if found is None or _claims(found.group(1)):
                return True
        elif name == b"subject":
            marks = _SUBJECT_MARKING.finditer(_text(value))
            if any(_claims(m.group(1) or m.group(2)) for m in marks):
                return True
    return False


def _claims(label: str) -> bool:
    return label.strip().upper() != _UNCLASSIFIED


def _text(value: bytes) -> str:
    """A field's value as a reader shows it: unfolded, RFC 2047 encoded-words decoded (a
    marking hidden in an encoded-word is still displayed to the recipient)."""
    text = value.replace(mime.CRLF, b"").decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


def _header(message: bytes) -> tuple[list[bytes], bytes]:
    """(header fields, each with its continuation lines and CRLFs; everything after them)."""
    # The caller has already bounded the message; the whole of it may be searched here.
    try:
        block, body = mime.split_header(message, Limits(max_header_bytes=len(message)))
        rest = mime.CRLF + body
    except SmimeError:  # no empty line: the message is all header (RFC 5322 §3.5)
        block, rest = mime.canonicalize(message), b""
        block += b"" if block.endswith(mime.CRLF) or not block else mime.CRLF
    fields: list[bytes] = []
    lines = block.split(mime.CRLF)[:-1]
    for number, line in enumerate(lines):
        if not line:  # a bare CR made an empty line: what follows is body to any reader
            return fields, mime.CRLF.join(lines[number:]) + mime.CRLF + rest
        if line[:1] not in (b" ", b"\t"):
            fields.append(line + mime.CRLF)
        elif fields:  # a continuation before any field belongs to none: dropped
            fields[-1] += line + mime.CRLF
    return fields, rest


def _owned(field: bytes) -> bool:
    name = field.split(b":", 1)[0].replace(mime.CRLF, b"").strip().decode("latin-1").lower()
    return name in _OWNED or name.startswith(TRUST_PREFIX.lower())


def _value(text: str) -> str:
    """An RFC 8601 §2.2 value: a token or an address as it stands, else a quoted string."""
    return text if _TOKEN.fullmatch(text) or _ADDRESS.fullmatch(text) else _quoted(text)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _separated(items: list[str]) -> list[str]:
    return [item + ";" for item in items[:-1]] + items[-1:]


def _fold(name: str, items: list[str]) -> bytes:
    """``name: items`` with a fold before any item that would pass 78 characters."""
    lines = [f"{name}:"]
    for item in items:
        if len(lines[-1]) + 1 + len(item) > _LINE and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += " " + item
    return "\r\n".join(lines).encode("utf-8") + mime.CRLF


def _display_field(name: str, text: str) -> bytes:
    """Free text for people: control characters removed, RFC 2047-encoded unless plain."""
    text = " ".join("".join(c if _printable(c) else " " for c in text).split())[:_MAX_DISPLAY]
    words = text.split()
    if text.isascii() and "=?" not in text and all(len(word) < _LINE - 10 for word in words):
        return _fold(name, words or [""])
    encoded = Header(text, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")
