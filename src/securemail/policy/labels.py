"""A message's classification: its protective markings in, one SecurityLabel and its source out.

Theory of operation. The New Zealand Email Protective Marking Standard (NZEMPMS) is the
Australian Email Protective Marking Standard version 2012.3 under the namespace ``gov.nz``.
It carries a marking two ways: an ``X-Protective-Marking`` header field for mail agents (§2.6)

    X-Protective-Marking: VER=2012.3, NS=gov.nz, SEC=IN-CONFIDENCE, ORIGIN=alice@agency.govt.nz

and a bracketed marking in the Subject for people (§2.5), ``Budget [SEC=IN-CONFIDENCE]``.
Keywords are ``KEY=value`` items separated by commas. SecureMail adds one keyword, ``PRIVACY=``,
for the ESS privacy mark (RFC 2634 §3.2), e.g. ``PERSONAL``; people also write the bare forms
``[IN-CONFIDENCE]`` and ``[PERSONAL]``, which are read too.

:func:`classify` reads the header field(s), then the Subject, then falls back to the
organisation's default label; a sender in a personal-use domain gets the privacy mark
PERSONAL. The standard gives the header precedence when both are present (§2.7) and requires
them to agree; when they do not, SecureMail takes the *higher* classification (fail closed)
and says so in :attr:`Classified.conflict`, as it does for a repeated field (§2.7 allows one)
or several markings in one Subject (§2.7.1). A classification word SecureMail does not carry
(CONFIDENTIAL, SECRET, a typo) is not a label: it is ignored and named in ``conflict``.

Security: the message is untrusted input. The header is read with the S/MIME layer's strict,
bounded reader; nothing read is ever raised as an exception, and text quoted back in
``conflict`` is cut short and escaped (``repr``), so it is safe for logs and terminals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from securemail.policy.model import OrgPolicy
from securemail.smime import mime
from securemail.smime.errors import Reason, SmimeError
from securemail.smime.labels import CLASSIFICATIONS, SecurityLabel
from securemail.smime.limits import Limits

FIELD = "X-Protective-Marking"
VERSION = "2012.3"  # the standard's version this gateway writes (VER=)
NAMESPACE = "gov.nz"  # the New Zealand government namespace (NS=)
PERSONAL = "PERSONAL"  # the privacy mark of personal-use mail (issue 7)

_LIMITS = Limits(max_header_bytes=64 * 1024, max_header_fields=1000)
_MAX_ITEMS = 64  # keyword items read from one marking
_MAX_SHOWN = 40  # characters of a hostile word quoted back in a note
_BRACKETS = re.compile(r"\[([^\[\]]{1,256})\]")
_TOKEN = re.compile(r"[A-Z0-9][A-Z0-9-]{0,63}")  # a privacy mark we read and write
_ORIGIN = re.compile(r"[!#$%&'*+\-/=?^_`{|}~.0-9A-Za-z]{1,64}@[-.0-9A-Za-z]{1,253}")


@dataclass(frozen=True)
class Classified:
    """The label a message travels with, where it came from, and any disagreement seen."""

    label: SecurityLabel | None  # None: unlabelled
    source: str  # "header" | "subject" | "default" | "personal" | "none"
    conflict: str | None = None  # what disagreed or was ignored, and what applies
    # A classification word SecureMail does not carry (SECRET, CONFIDENTIAL, a typo) when no
    # carried one was found: the sending gateway refuses such mail rather than guess (fail
    # closed: reason "marking-unsupported").
    unsupported: str | None = None


@dataclass(frozen=True)
class _Seen:
    """One classification word or privacy mark as read, before it is trusted."""

    source: str  # "header" or "subject"
    word: str | None = None  # normalised classification word, known or not
    privacy: str | None = None


def classify(message: bytes, policy: OrgPolicy, *, sender: str) -> Classified:
    """The label of ``message`` from ``sender`` under ``policy`` (never raises on the input)."""
    notes: list[str] = []
    seen = _markings(message, notes)
    word, source = _classification(seen, notes)
    privacy, privacy_source = _privacy(seen, notes)
    if word is None and policy.default_label is not None:
        word, source = policy.default_label, "default"
    if _domain(sender) in policy.personal_domains:
        if privacy not in (None, PERSONAL):
            notes.append(f"privacy mark {privacy} replaced by {PERSONAL}: personal-use domain")
        privacy, privacy_source = PERSONAL, privacy_source or "personal"
    conflict = "; ".join(notes) or None
    unknown = [s.word for s in seen if s.word is not None and s.word not in CLASSIFICATIONS]
    unsupported = (
        unknown[0] if unknown and not any(s.word in CLASSIFICATIONS for s in seen) else None
    )
    if word is None and privacy is None:
        return Classified(None, "none", conflict, unsupported)
    label = SecurityLabel(word, privacy)
    return Classified(label, source or privacy_source or "none", conflict, unsupported)


def protective_marking(label: SecurityLabel, *, origin: str) -> str:
    """The ``X-Protective-Marking`` value for ``label``, written by ``origin`` (an address)."""
    if not _ORIGIN.fullmatch(origin):
        raise ValueError("origin must be a plain address (no spaces, commas or controls)")
    return ", ".join([f"VER={VERSION}", f"NS={NAMESPACE}", *_items(label), f"ORIGIN={origin}"])


def subject_marking(label: SecurityLabel) -> str:
    """The Subject form of ``label``, e.g. ``[SEC=IN-CONFIDENCE, PRIVACY=PERSONAL]``."""
    return "[" + ", ".join(_items(label)) + "]"


def _items(label: SecurityLabel) -> list[str]:
    if label.classification is None and label.privacy_mark is None:
        raise ValueError("a label with neither classification nor privacy mark has no marking")
    if label.privacy_mark is not None and not _TOKEN.fullmatch(label.privacy_mark):
        raise ValueError("privacy mark must be upper-case letters, digits and hyphens")
    items = [] if label.classification is None else [f"SEC={label.classification}"]
    return items + ([] if label.privacy_mark is None else [f"PRIVACY={label.privacy_mark}"])


def _markings(message: bytes, notes: list[str]) -> list[_Seen]:
    """Every marking in the header field(s), then in the (first) Subject, in that order."""
    fields = _fields(message, notes)
    seen = [s for v in _values(fields, FIELD, notes) for s in _header_marking(v, notes)]
    subjects = _values(fields, "Subject", notes)
    return seen + [s for v in subjects[:1] for s in _subject_markings(_decoded(v), notes)]


def _fields(message: bytes, notes: list[str]) -> mime.Fields:
    try:
        block, _ = mime.split_header(message, _LIMITS)
    except SmimeError as error:
        if error.reason is not Reason.MALFORMED:
            notes.append(f"header not read ({error.reason.value}): markings ignored")
            return []
        block = mime.canonicalize(message)  # no empty line: all header (RFC 5322 §3.5)
        block += b"" if block.endswith(mime.CRLF) or not block else mime.CRLF
    try:
        return mime.header_fields(block, _LIMITS)
    except SmimeError as error:
        notes.append(f"header not read ({error.reason.value}): markings ignored")
        return []


def _values(fields: mime.Fields, name: str, notes: list[str]) -> list[str]:
    values = [v.decode("ascii", "replace") for n, v in fields if n.lower() == name.lower()]
    if len(values) > 1:
        notes.append(f"{len(values)} {name} fields (the standard allows one): all were read")
    return values


def _header_marking(value: str, notes: list[str]) -> list[_Seen]:
    keywords = _keywords(value)
    namespace = (keywords.get("NS") or [NAMESPACE])[0]
    if namespace.lower() != NAMESPACE:
        notes.append(f"header marking in namespace {_shown(namespace)}, not {NAMESPACE}")
    seen = _from_keywords(keywords, "header")
    if not seen:
        notes.append(f"{FIELD} without SEC or PRIVACY: ignored")
    return seen


def _subject_markings(subject: str, notes: list[str]) -> list[_Seen]:
    markings: list[list[_Seen]] = []
    for found in _BRACKETS.finditer(subject):
        seen = _bracketed(found.group(1))
        markings += [seen] if seen else []
    if len(markings) > 1:
        notes.append(f"{len(markings)} markings in the subject (the standard allows one)")
    return [s for marking in markings for s in marking]


def _keywords(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in text.split(",")[:_MAX_ITEMS]:
        key, equals, value = item.partition("=")
        if equals:
            found.setdefault(key.strip().upper(), []).append(value.strip())
    return found


def _from_keywords(keywords: dict[str, list[str]], source: str) -> list[_Seen]:
    seen = [_Seen(source, word=_word(v)) for v in keywords.get("SEC", [])]
    return seen + [_Seen(source, privacy=_word(v)) for v in keywords.get("PRIVACY", [])]


def _bracketed(content: str) -> list[_Seen]:
    """``[SEC=…, PRIVACY=…]``, ``[IN-CONFIDENCE]`` or ``[PERSONAL]``; other text is no marking."""
    if "=" in content:
        return _from_keywords(_keywords(content), "subject")
    word = _word(content)
    if word in CLASSIFICATIONS:
        return [_Seen("subject", word=word)]
    return [_Seen("subject", privacy=word)] if word == PERSONAL else []


def _word(text: str) -> str:
    """Upper case, spaces as hyphens: ``in confidence`` is ``IN-CONFIDENCE``."""
    return "-".join(text.upper().split())


def _classification(seen: list[_Seen], notes: list[str]) -> tuple[str | None, str | None]:
    words = [s for s in seen if s.word is not None]
    for s in words:
        if s.word not in CLASSIFICATIONS:
            word = _shown(s.word or "")
            notes.append(f"{s.source} marking SEC={word}: not a classification SecureMail carries")
    known = [s for s in words if s.word in CLASSIFICATIONS]
    if not known:
        return None, None
    best = max(known, key=lambda s: CLASSIFICATIONS[s.word or ""])  # first of equals: header
    if len({s.word for s in known}) > 1:
        said = ", ".join(f"{s.source} says {s.word}" for s in known)
        notes.append(f"markings disagree ({said}): {best.word}, the higher, applies")
    return best.word, best.source


def _privacy(seen: list[_Seen], notes: list[str]) -> tuple[str | None, str | None]:
    marks = [s for s in seen if s.privacy is not None]
    for s in marks:
        if not _TOKEN.fullmatch(s.privacy or ""):
            notes.append(f"{s.source} privacy mark {_shown(s.privacy or '')} is not a token")
    valid = [s for s in marks if _TOKEN.fullmatch(s.privacy or "")]
    if not valid:
        return None, None
    if len({s.privacy for s in valid}) > 1:
        notes.append(f"privacy marks disagree: {valid[0].privacy} ({valid[0].source}) applies")
    return valid[0].privacy, valid[0].source


def _decoded(subject: str) -> str:
    """The Subject as people read it: RFC 2047 encoded-words decoded when they are valid."""
    if "=?" not in subject:
        return subject
    try:
        return str(make_header(decode_header(subject)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return subject


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def _shown(text: str) -> str:
    return repr(text[:_MAX_SHOWN])
