"""What the verification panel may say about a message: only what this node's gateway wrote.

Theory of operation. Everything the gateway stores in a mailbox carries the mailbox seal
(:mod:`securemail.deliver.seal`): a MAC under a key only the node holds, over the mailbox
and every octet of the file, with the origin of the message. The caller checks the seal
and passes its ``origin``; no header field, keyword or file name is believed without it, so
a message a mail client appended, copied in from another mailbox or changed (or a
keyword a client stored) is never shown as anything but not verified. Under a good seal:

- origin ``delivered``: the inbound gateway removed every trust field that came from
  outside and prepended its own (:mod:`securemail.marking`). The message is verified when
  the file also carries ``$SecureMail`` (the gateway sets it on verified mail; a second,
  independent statement of the same fact, which no client can add where the seal is
  checked, :mod:`securemail.imap.folders`), the *topmost* ``Authentication-Results``
  names this node (RFC 8601 §5) and says ``smime=pass``, the *topmost*
  ``X-SecureMail-Status`` begins ``verified`` and names a signer, and the single From:
  address is the ``header.from`` the gateway checked.
  Otherwise it is mail from outside SecureMail, and said to be so;
- origin ``notice``: the gateway's own notice or signed receipt to this mailbox;
- origin ``sent``: the webmail's copy of mail this mailbox sent through the gateway.

A copy a mail program saved of mail it sent (its Sent folder, by IMAP APPEND) is not
sealed; when the gateway has a record of this account sending that Message-ID,
:func:`own_copy` says so, neither green nor red: the record is the gateway's, the text is
the mail program's.

The signer organisation's name comes from the directory by its id, never from the message.
Pure: header fields, the seal's origin, the directory and the stored time in; a
:class:`Verdict` out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum

from securemail import addresses
from securemail.deliver.seal import Origin
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.directory.model import Directory
from securemail.evidence.mdn import SUBJECT as RECEIPT_SUBJECT
from securemail.marking import WARNING_FIELD
from securemail.policy.assurance import describe
from securemail.policy.labels import classify
from securemail.policy.model import OrgPolicy
from securemail.smime import mime
from securemail.smime.assurance import IdentityCheck, SenderAssurance

NOT_VERIFIED = "Not verified: this message did not come through SecureMail"
NOT_SEALED = (
    "Not verified: SecureMail did not store this copy here (a mail program added, copied "
    "or changed it)"
)
SENT = "Sent through SecureMail from your account"
OWN_COPY = (
    "Your mail program's copy of a message SecureMail sent for you: the delivery record "
    "below is the gateway's, the text shown is the copy's"
)
_ITEM = re.compile(r'\s*([A-Za-z0-9.-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*))?\s*')
_NO_POLICY = OrgPolicy()


class Trust(StrEnum):
    """The panel's state: its heading and colour."""

    VERIFIED = "verified"  # signed by a member, verified by this gateway
    SENT = "sent"  # sent from this mailbox through SecureMail (the webmail's copy)
    GATEWAY = "gateway"  # the gateway's own notice or receipt
    OWN_COPY = "own-copy"  # a mail program's copy of mail the gateway has a record of sending
    NOT_VERIFIED = "not-verified"


@dataclass(frozen=True)
class Verdict:
    """What the panel shows. Unless ``state`` is VERIFIED, every signer field is None."""

    state: Trust
    summary: str  # one sentence for people
    signer_org: str | None = None  # directory id of the organisation that signed
    signer_name: str | None = None  # its name in the directory (None: not listed now)
    from_address: str | None = None  # the From: the gateway authenticated
    label: str | None = None  # classification the gateway read from the signed label
    claimed_label: str | None = None  # a marking in the header or Subject, unverified
    warning: str | None = None  # the gateway's warning about a claimed classification
    receipt: str | None = None  # the gateway's receipt note: "sent", "not-requested", ...
    received: datetime | None = None
    sealed: bool = False  # the gateway stored this copy here
    # The sender's provider's signed word on how the sender logged in, in plain words
    # ("strong login (password and one-time code), sole use since 3 Dec 2026, ..."), or why
    # it is not believed; None when the message carries none (docs/assurance.md).
    assurance: str | None = None

    @property
    def verified(self) -> bool:
        return self.state is Trust.VERIFIED


def judge(
    fields: mime.Fields,
    *,
    node_name: str,
    origin: Origin | None,
    keywords: frozenset[str],
    directory: Directory | None,
    received: datetime | None,
) -> Verdict:
    """The verdict on a stored message from its header ``fields``, its seal's ``origin`` and
    its Maildir ``keywords``."""
    claimed = _claimed_label(fields)
    warning = _text(_first(fields, WARNING_FIELD))
    if origin is None:
        return Verdict(
            Trust.NOT_VERIFIED,
            NOT_SEALED,
            claimed_label=claimed,
            warning=warning,
            received=received,
        )
    if origin is Origin.SENT:
        return Verdict(Trust.SENT, SENT, received=received, sealed=True)
    if origin is Origin.NOTICE:
        return Verdict(Trust.GATEWAY, _notice(fields, node_name), received=received, sealed=True)
    status = _items(_first(fields, "X-SecureMail-Status"))
    results = _results(_first(fields, "Authentication-Results"), node_name)
    author = author_of(fields)
    trusted = (
        SECUREMAIL_KEYWORD.lower() in {k.lower() for k in keywords}
        and results is not None
        and results.get("smime") == "pass"
        and status.get("verified") == ""
        and bool(status.get("signer"))
        and author is not None
        and author == (results.get("header.from") or "").lower()
    )
    if not trusted:
        return Verdict(
            Trust.NOT_VERIFIED,
            NOT_VERIFIED,
            claimed_label=claimed,
            warning=warning,
            received=received,
            sealed=True,
        )
    org = status["signer"]
    member = directory.member(org) if directory is not None else None
    name = member.name if member is not None else None
    shown = name or f"organisation {org!r} (not in the current directory)"
    return Verdict(
        Trust.VERIFIED,
        f"Verified by SecureMail: signed by {shown}",
        signer_org=org,
        signer_name=name,
        from_address=author,
        label=status.get("label") or None,
        claimed_label=claimed,
        receipt=status.get("receipt") or None,
        received=received,
        sealed=True,
        assurance=_assurance(status, org, author or ""),
        warning=warning,
    )


def _assurance(status: dict[str, str], org: str, author: str) -> str | None:
    """The sender assurance items of the gateway's status field, in plain words."""
    state = status.get("assurance")
    if state == "unverified":
        why = status.get("assurance-reason") or "unknown"
        return f"Not verified: the signer is not this sender's mail provider ({why})"
    if state != "verified":
        return None
    try:
        since = status.get("sole-use-since")
        level, method = status.get("identity-level"), status.get("identity-method")
        verified_on = status.get("identity-verified")
        identity = None
        if level and method and verified_on:
            identity = IdentityCheck(level, method, date.fromisoformat(verified_on))
        value = SenderAssurance(
            provider=org,
            address=author,
            login=status.get("login") or "unknown",
            sole_use_since=None if not since else datetime.fromisoformat(since + "T00:00:00+00:00"),
            identity=identity,
        )
    except ValueError:
        return None
    words = describe(value)
    return words[:1].upper() + words[1:]


def own_copy(verdict: Verdict) -> Verdict:
    """``verdict`` on an unsealed copy of mail the gateway has a record of this account
    sending (the caller looked the Message-ID up): said as such, not as foreign mail."""
    if verdict.sealed or verdict.state is not Trust.NOT_VERIFIED:
        return verdict
    return replace(verdict, state=Trust.OWN_COPY, summary=OWN_COPY)


def _notice(fields: mime.Fields, node_name: str) -> str:
    subject = _text(_first(fields, "Subject")) or ""
    what = "Receipt" if subject == RECEIPT_SUBJECT else "Notice"
    return f"{what} from your SecureMail gateway {node_name}"


def _first(fields: mime.Fields, name: str) -> bytes | None:
    """The topmost field called ``name``: the one this node's gateway prepended."""
    return next((value for n, value in fields if n.lower() == name.lower()), None)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace").strip()


def _items(value: bytes | None) -> dict[str, str]:
    """``key[=value]`` items of a ``;``-separated field; quoted values unquoted."""
    found: dict[str, str] = {}
    for part in _split(_text(value) or ""):
        match = _ITEM.fullmatch(part)
        if match is not None:
            raw = match.group(2) or ""
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            found.setdefault(match.group(1).lower(), raw)
    return found


def _split(text: str) -> list[str]:
    """Split at ``;`` outside quoted strings."""
    parts, current, quoted, escaped = [], "", False, False
    for char in text:
        if char == ";" and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
    return [*parts, current]


def _results(value: bytes | None, node_name: str) -> dict[str, str] | None:
    """The method results of an Authentication-Results from ``node_name``, else None."""
    text = _text(value)
    if text is None:
        return None
    authserv, _, rest = text.partition(";")
    authserv = authserv.strip().strip('"')
    if authserv.lower() != node_name.lower():
        return None
    found: dict[str, str] = {}
    for word in rest.split():
        key, equals, val = word.partition("=")
        if equals:
            found.setdefault(key.lower(), val.strip('"').lower())
    return found


def author_of(fields: mime.Fields) -> str | None:
    """The single From: address (lower case), or None if the header has no single author."""
    block = b"".join(name.encode("latin-1") + b": " + value + b"\r\n" for name, value in fields)
    try:
        return addresses.author(block, smtputf8=True).address.lower()
    except addresses.AddressError:
        return None


def _claimed_label(fields: mime.Fields) -> str | None:
    """A classification the header claims (X-Protective-Marking or Subject), unverified."""
    wanted = ("x-protective-marking", "subject")
    block = b"".join(
        n.encode("latin-1") + b": " + v + b"\r\n" for n, v in fields if n.lower() in wanted
    )
    label = classify(block + b"\r\n", _NO_POLICY, sender="").label
    if label is None:
        return None
    return ", ".join(x for x in (label.classification, label.privacy_mark) if x)
