"""What the verification panel may say about a message: only what this node's gateway wrote.

Theory of operation. The inbound gateway removes every trust field that came from outside
and prepends its own (:mod:`securemail.marking`): an ``Authentication-Results`` field whose
authserv-id is this node's name, an ``X-SecureMail-Status`` field, and on verified mail the
IMAP keyword ``$SecureMail`` on the stored file (:mod:`securemail.deliver.maildir`). A
message is shown as verified only when all of these hold at once:

- the file carries ``$SecureMail`` (the gateway sets it at delivery; a mail client that
  copies or imports mail over IMAP APPEND does not, so an imported message whose header
  was forged elsewhere, or copied from another SecureMail node, stays unverified);
- the *topmost* ``Authentication-Results`` names this node (RFC 8601 §5: only fields from
  our own authserv-id are trusted) and says ``smime=pass``;
- the *topmost* ``X-SecureMail-Status`` begins ``verified`` and names a signer;
- the message's single From: address is the ``header.from`` the gateway checked.

Anything else is :data:`NOT_VERIFIED`. A mailbox owner can still forge all of this in their
own mailbox (APPEND with the keyword); that fools only themselves, and the gateway, which
alone accepts mail from others, strips such fields.

The signer organisation's name comes from the directory by its id, never from the message.
Pure: header fields, keywords, the directory and the stored time in; a :class:`Verdict` out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from securemail import addresses
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.directory.model import Directory
from securemail.marking import WARNING_FIELD
from securemail.policy.labels import classify
from securemail.policy.model import OrgPolicy
from securemail.smime import mime

NOT_VERIFIED = "Not verified: this message did not come through SecureMail"
_ITEM = re.compile(r'\s*([A-Za-z0-9.-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*))?\s*')
_NO_POLICY = OrgPolicy()


@dataclass(frozen=True)
class Verdict:
    """What the panel shows. ``verified`` False means every other trust field is None."""

    verified: bool
    summary: str  # one sentence for people
    signer_org: str | None = None  # directory id of the organisation that signed
    signer_name: str | None = None  # its name in the directory (None: not listed now)
    from_address: str | None = None  # the From: the gateway authenticated
    label: str | None = None  # classification the gateway read from the signed label
    claimed_label: str | None = None  # a marking in the header or Subject, unverified
    warning: str | None = None  # the gateway's warning about a claimed classification
    receipt: str | None = None  # the gateway's receipt note: "sent", "not-requested", ...
    received: datetime | None = None


def judge(
    fields: mime.Fields,
    *,
    node_name: str,
    keywords: frozenset[str],
    directory: Directory | None,
    received: datetime | None,
) -> Verdict:
    """The verdict on a stored message from its header ``fields`` and Maildir ``keywords``."""
    claimed = _claimed_label(fields)
    warning = _text(_first(fields, WARNING_FIELD))
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
            False, NOT_VERIFIED, claimed_label=claimed, warning=warning, received=received
        )
    org = status["signer"]
    member = directory.member(org) if directory is not None else None
    name = member.name if member is not None else None
    shown = name or f"organisation {org!r} (not in the current directory)"
    return Verdict(
        True,
        f"Verified by SecureMail: signed by {shown}",
        signer_org=org,
        signer_name=name,
        from_address=author,
        label=status.get("label") or None,
        claimed_label=claimed,
        receipt=status.get("receipt") or None,
        received=received,
    )


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
