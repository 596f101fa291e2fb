"""Pure checks of the envelope addresses in MAIL FROM and RCPT TO.

Only the plain form ``dot-atom@domain`` (RFC 5321 §4.1.2 Dot-string and Domain) is taken.
Everything an attacker can use to make a gateway relay where its policy did not look is
refused before any policy runs:

- source routes ``<@a,@b:u@c>`` (RFC 5321 §4.1.1.3, Appendix C: obsolete),
- the %-hack ``u%c@ours`` and bang paths ``c!u@ours`` (the local part names another host),
- quoted local parts ``"u@c"@ours`` (the local part hides an address),
- address literals ``u@[192.0.2.1]`` (a host the directory does not name),
- non-ASCII without SMTPUTF8 (RFC 6531, ``553 5.6.7``; this gateway does not offer it).

Routing tricks are answered ``550 5.7.1`` like any relay attempt; malformed text ``553
5.1.3`` (RFC 3463 "bad destination mailbox address syntax"). Both carry the reason
``bad-address``; the detail names the trick for the log.
"""

from __future__ import annotations

import re

from securemail.receive.model import ReceiveReason
from securemail.replies import Reply

# RFC 5322 atext without "%" and "!": they name another host inside the local part.
_ATOM = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MAILBOX = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")

# RFC 5321 §4.5.3.1.1-3: local part 64, domain 255, path 256 octets (with the brackets).
_MAX_LOCAL = 64
_MAX_DOMAIN = 255
_MAX_PATH = 254

_TRICKS = (
    ('"', "quoted local part"),
    ("\\", "quoted local part"),
    ("[", "address literal"),
    ("%", "percent hack"),
    ("!", "bang path"),
)


def _relay_trick(detail: str) -> Reply:
    return Reply(550, "5.7.1", "Relay not permitted", ReceiveReason.BAD_ADDRESS, detail)


def _malformed(detail: str) -> Reply:
    return Reply(553, "5.1.3", "Bad address syntax", ReceiveReason.BAD_ADDRESS, detail)


def _trick_in(address: str) -> str | None:
    if address.startswith("@") or ":" in address:
        return "source route"
    for mark, name in _TRICKS:
        if mark in address:
            return name
    return "several @ signs" if address.count("@") > 1 else None


def check_envelope_address(text: str) -> Reply | None:
    """``None`` if ``text`` (the path without its angle brackets) is a plain mailbox.

    Otherwise the refusal to send: 550 5.7.1 for a routing trick, 553 5.1.3 for bad syntax.
    """
    if not text.isascii():
        # RFC 6531: status 5.6.7, as aiosmtpd's own refusal of non-ASCII arguments.
        detail = "non-ASCII address without SMTPUTF8"
        return Reply(
            553, "5.6.7", "Non-ASCII text requires SMTPUTF8", ReceiveReason.BAD_ADDRESS, detail
        )
    trick = _trick_in(text)
    if trick is not None:
        return _relay_trick(trick)
    if len(text) > _MAX_PATH:
        return _malformed("address longer than RFC 5321 allows")
    local, _, domain = text.rpartition("@")
    if len(local) > _MAX_LOCAL or len(domain) > _MAX_DOMAIN:
        return _malformed("local part or domain longer than RFC 5321 allows")
    if _MAILBOX.fullmatch(text) is None:
        return _malformed("not a dot-atom@domain mailbox")
    return None


def domain_of(address: str) -> str:
    """The domain of a checked mailbox, lower case (DNS names compare case-insensitively)."""
    return address.rpartition("@")[2].lower()
