"""The one author of a message: its single From: mailbox, strictly parsed (THREATS.md E).

Theory of operation. The gateway decides who a message is from by its From: field alone
(the signer must own that domain), so the parse must be unambiguous: one From: field, no
Sender: field (in this profile author and submitter are one), one mailbox (RFC 5322 §3.4: no
group, no list), no obsolete route, quoted local part or domain literal, and no RFC 2047
encoded-word inside the address (a reader that decodes it sees another address than the one
we checked). The value is tokenised once (comments and folding whitespace dropped, RFC 5322
§3.2.2) and read by a few fixed rules; not by Python's ``email``, which keeps the first of two
From: fields and decodes encoded-words inside addresses.

The display name is decoded (RFC 2047) for showing to people and is never used for
identity: ``"boss@agency.govt.nz" <evil@x.nz>`` is the mailbox ``evil@x.nz``.

Internationalised addresses (RFC 6531/6532) are accepted only with ``smtputf8=True``; they
are NFC-normalised, refused if they hold invisible characters or mix scripts in one label,
and the domain is returned as IDNA A-labels: the standard library's ``punycode`` codec
(RFC 3492) under this module's conservative subset of IDNA 2008 (RFC 5891/5892: letters,
marks and digits of one script). Not the ``idna`` codec: it is IDNA 2003, whose nameprep maps
``ß`` to ``ss`` and drops zero-width joiners, naming other domains than registries do. An
``xn--`` label that arrives must decode to a label these rules accept and re-encode to itself.

Security: the header is untrusted input from any sender. Every refusal is an
:class:`AddressError`; nothing else escapes, whatever the bytes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from enum import StrEnum

from securemail.errors import SecureMailError
from securemail.smime import mime
from securemail.smime.errors import SmimeError
from securemail.smime.limits import Limits


class AddressReason(StrEnum):
    """Why a message has no single trustworthy author. Values are the wire reason codes."""

    NO_FROM = "from-missing"
    MANY_FROM = "from-multiple"
    SENDER_FIELD = "sender-present"
    GROUP = "from-group"
    MANY_MAILBOXES = "from-mailbox-list"
    ENCODED_WORD = "from-encoded-word"
    SYNTAX = "from-syntax"
    NON_ASCII = "from-non-ascii"
    MIXED_SCRIPT = "from-mixed-script"


class AddressError(SecureMailError[AddressReason]):
    """A From: field that does not name exactly one well-formed mailbox."""


@dataclass(frozen=True)
class Mailbox:
    """One author: ``local``@``domain`` (A-labels, lower case); ``display`` is for people only."""

    local: str
    domain: str
    display: str = ""

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


@dataclass(frozen=True)
class _Token:
    kind: str  # "atom", "quoted", or the special character itself
    text: str  # a quoted string without its quotes and backslashes
    start: int
    end: int
    spaced: bool  # folding whitespace or a comment came just before it


_LIMITS = Limits()
_MAX_LOCAL_OCTETS = 64  # RFC 5321 §4.5.3.1.1
_MAX_DOMAIN_OCTETS = 253  # RFC 1035 §2.3.4, less the length octets
_TOKEN = re.compile(
    r"(?P<space>[ \t\r\n]+)|(?P<comment>\()|(?P<quoted>\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<special>[<>@,;:.\[\]])|(?P<atom>[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\U0010ffff]+)",
    re.DOTALL,
)
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def author(message: bytes, *, smtputf8: bool = False) -> Mailbox:
    """The single From: mailbox of ``message`` (header block, or the whole message)."""
    fields = _header_fields(message)
    froms = [value for name, value in fields if name.lower() == "from"]
    if not froms:
        raise AddressError(AddressReason.NO_FROM, "no From: field")
    if len(froms) > 1:
        raise AddressError(AddressReason.MANY_FROM, f"{len(froms)} From: fields")
    if any(name.lower() == "sender" for name, _ in fields):
        raise AddressError(AddressReason.SENDER_FIELD, "a Sender: field is present")
    return parse_mailbox(froms[0], smtputf8=smtputf8)


def _header_fields(message: bytes) -> mime.Fields:
    try:
        block, _ = mime.split_header(message, _LIMITS)
    except SmimeError:
        if len(message) > _LIMITS.max_header_bytes:
            raise AddressError(AddressReason.SYNTAX, "header too large") from None
        block = mime.canonicalize(message.rstrip(b"\r\n") + mime.CRLF)  # RFC 5322 §3.5
    try:
        return mime.header_fields(block, _LIMITS)
    except SmimeError as error:
        raise AddressError(AddressReason.SYNTAX, f"header: {error.detail}") from None


def parse_mailbox(value: bytes, *, smtputf8: bool = False) -> Mailbox:
    """Parse one RFC 5322 ``mailbox`` (a From: field value, folded or not)."""
    if not smtputf8 and not value.isascii():
        raise AddressError(AddressReason.NON_ASCII, "8-bit From: without SMTPUTF8")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressError(AddressReason.SYNTAX, "From: is not UTF-8") from None
    tokens = _tokenize(text)
    display, inner = _split_mailbox(tokens)
    if "=?" in text[inner[0].start : inner[-1].end]:
        raise AddressError(AddressReason.ENCODED_WORD, "encoded-word inside the address")
    local, domain = _addr_spec(inner)
    return Mailbox(_local_part(local), _domain_to_ascii(domain), _display(display))


def _tokenize(text: str) -> list[_Token]:
    """Atoms, quoted strings and specials, in order; whitespace and comments are dropped."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise AddressError(AddressReason.SYNTAX, f"unexpected U+{ord(text[pos]):04X}")
        kind, raw, start = match.lastgroup or "", match.group(), match.start()
        pos = _skip_comment(text, start) if kind == "comment" else match.end()
        if kind in ("space", "comment"):
            continue
        spaced = start != (tokens[-1].end if tokens else 0)
        if kind == "quoted":
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
        tokens.append(_Token(raw if kind == "special" else kind, raw, start, pos, spaced))
    if not tokens:
        raise AddressError(AddressReason.SYNTAX, "empty From:")
    return tokens


def _skip_comment(text: str, pos: int) -> int:
    """The position after the comment opening at ``pos`` (comments nest, RFC 5322 §3.2.2)."""
    depth = 0
    while pos < len(text):
        depth += {"(": 1, ")": -1}.get(text[pos], 0)
        if depth == 0:
            return pos + 1
        pos += 2 if text[pos] == "\\" else 1
    raise AddressError(AddressReason.SYNTAX, "unterminated comment")


def _split_mailbox(tokens: list[_Token]) -> tuple[list[_Token], list[_Token]]:
    """(display-name tokens, addr-spec tokens) of one ``name-addr`` or ``addr-spec``."""
    kinds = [token.kind for token in tokens]
    depth, outside = 0, set()
    for kind in kinds:
        depth += (kind == "<") - (kind == ">")
        if depth not in (0, 1):
            raise AddressError(AddressReason.SYNTAX, "unbalanced angle brackets")
        outside |= {kind} if depth == 0 else set()
    if outside & {":", ";"}:
        raise AddressError(AddressReason.GROUP, "group syntax in From:")
    if "," in outside:
        raise AddressError(AddressReason.MANY_MAILBOXES, "more than one mailbox in From:")
    if "<" not in kinds:
        return [], tokens
    opened, closed = kinds.index("<"), kinds.index(">") if ">" in kinds else -1
    if depth or kinds.count("<") > 1 or closed != len(kinds) - 1:
        raise AddressError(AddressReason.SYNTAX, "not one angle-addr at the end")
    if set(kinds[:opened]) - {"atom", "quoted", "."}:
        raise AddressError(AddressReason.SYNTAX, "special character in the display name")
    if closed == opened + 1 or kinds[opened + 1] == "@":
        raise AddressError(AddressReason.SYNTAX, "empty address or obsolete route")
    return tokens[:opened], tokens[opened + 1 : closed]


def _addr_spec(tokens: list[_Token]) -> tuple[str, str]:
    """(local part, domain) of ``dot-atom "@" dot-atom`` (RFC 5322 §3.4.1, no obs- forms)."""
    kinds = [token.kind for token in tokens]
    if "quoted" in kinds:
        raise AddressError(AddressReason.SYNTAX, "quoted local part")
    if "[" in kinds:
        raise AddressError(AddressReason.SYNTAX, "domain literal")
    if kinds.count("@") != 1:
        raise AddressError(AddressReason.SYNTAX, "an address needs exactly one @")
    at = kinds.index("@")
    return _dot_atom(tokens[:at]), _dot_atom(tokens[at + 1 :])


def _dot_atom(tokens: list[_Token]) -> str:
    """``atom *("." atom)``: whitespace or comments may surround it, never split it."""
    kinds = "".join("a" if t.kind == "atom" else t.kind for t in tokens)
    if not re.fullmatch(r"a(?:\.a)*", kinds) or any(t.spaced for t in tokens[1:]):
        raise AddressError(AddressReason.SYNTAX, "malformed local part or domain")
    return "".join(token.text for token in tokens)


def _local_part(local: str) -> str:
    local = unicodedata.normalize("NFC", local)
    for piece in local.split(".") if not local.isascii() else ():
        _check_text(piece)
    if len(local.encode("utf-8")) > _MAX_LOCAL_OCTETS:
        raise AddressError(AddressReason.SYNTAX, "local part over 64 octets")
    return local


def _display(tokens: list[_Token]) -> str:
    """The display name for people: words joined, RFC 2047 encoded-words decoded."""
    shown, previous_encoded = "", False
    for token in tokens:
        encoded = token.kind == "atom" and bool(_ENCODED_WORD.fullmatch(token.text))
        # RFC 2047 §6.2: whitespace between adjacent encoded-words is not displayed
        if token.spaced and shown and not (encoded and previous_encoded):
            shown += " "
        shown += _decode_word(token.text) if encoded else token.text
        previous_encoded = encoded
    return "".join(c for c in shown if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))


def _decode_word(word: str) -> str:
    try:
        return str(make_header(decode_header(word)))
    except (LookupError, ValueError, HeaderParseError):  # shown as written
        return word


def _domain_to_ascii(domain: str) -> str:
    """The domain as lower-case A-labels (RFC 5890 §2.3.2.1), checked label by label."""
    if not domain.isascii():
        domain = unicodedata.normalize("NFC", unicodedata.normalize("NFC", domain).lower())
    labels = [_a_label(label) for label in domain.split(".")]
    result = ".".join(labels)
    if len(labels) < 2 or len(result) > _MAX_DOMAIN_OCTETS:
        raise AddressError(AddressReason.SYNTAX, "not a fully qualified domain name")
    return result


def _a_label(label: str) -> str:
    if not label.isascii():
        _check_u_label(label)
        label = "xn--" + label.encode("punycode").decode("ascii")
    label = label.lower()
    if not _LDH_LABEL.fullmatch(label):
        raise AddressError(AddressReason.SYNTAX, "domain label is not letters, digits, hyphens")
    if label[2:4] == "--":  # RFC 5891 §4.2.3.1: only A-labels use this position
        _check_a_label(label)
    return label


def _check_a_label(label: str) -> None:
    """An ``xn--`` label must decode to a valid U-label that encodes back to it exactly."""
    try:
        decoded = label[4:].encode("ascii").decode("punycode") if label[:4] == "xn--" else ""
    except UnicodeError:
        decoded = ""
    if decoded.isascii() or unicodedata.normalize("NFC", decoded.lower()) != decoded:
        raise AddressError(AddressReason.SYNTAX, f"{label} is not a valid A-label")
    _check_u_label(decoded)
    if "xn--" + decoded.encode("punycode").decode("ascii") != label:
        raise AddressError(AddressReason.SYNTAX, f"{label} is not a canonical A-label")


def _check_u_label(label: str) -> None:
    if label[:1] == "-" or label[-1:] == "-" or label[2:4] == "--":
        raise AddressError(AddressReason.SYNTAX, "hyphen misplaced in a domain label")
    if any(c.isascii() and not (c.isalnum() or c == "-") for c in label):
        raise AddressError(AddressReason.SYNTAX, "domain label is not letters, digits, hyphens")
    _check_text(label)


def _check_text(text: str) -> None:
    """Letters, marks and digits only (nothing invisible), of one script family."""
    for char in text:
        category = unicodedata.category(char)
        if not (char.isascii() or category[0] in "LM" or category == "Nd"):
            kind = "invisible" if category in ("Cf", "Cc", "Zs") else "disallowed"
            raise AddressError(AddressReason.SYNTAX, f"{kind} character U+{ord(char):04X}")
    if text and unicodedata.category(text[0])[0] == "M":
        raise AddressError(AddressReason.SYNTAX, "a label starts with a combining mark")
    scripts = {script for char in text if (script := _script(char))}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_SETS):
        detail = "mixed scripts: " + ", ".join(sorted(scripts))
        raise AddressError(AddressReason.MIXED_SCRIPT, detail)


def _script(char: str) -> str | None:
    """A letter's script: the first word of its Unicode name (the stdlib has no Script)."""
    if unicodedata.category(char)[0] != "L":
        return None  # digits and marks belong to every script (UTS #24 Common, Inherited)
    words = unicodedata.name(char, "UNNAMED").split()
    if words[0] in ("HALFWIDTH", "FULLWIDTH") and len(words) > 1:
        words = words[1:]
    return _SCRIPT_ALIASES.get(words[0], words[0])


_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN", "KATAKANA-HIRAGANA": "KATAKANA"}
# UTS #39 §5.2 "Highly Restrictive": one script, or Latin with Japanese, Chinese or Korean.
_SCRIPT_SETS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
