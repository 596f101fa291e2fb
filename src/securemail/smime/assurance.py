"""The senderAssurance signed attribute: what a mail service provider vouches for a sender.

A provider's gateway signs, beside the message, how its mailbox holder logged in to submit
it (``login``), since when the holder has acknowledged being the mailbox's only user, and
how (and at what level) the provider verified the holder's identity. Signed, it is the
provider's word under the provider's key; the receiving gateway decides whether to believe
it (only from the provider that owns the From: domain, about that From: address; see
:mod:`securemail.unprotect.assurance`).

DER (docs/profile.md §2.2)::

    SenderAssurance ::= SEQUENCE {
      provider      UTF8String,       -- directory org id of the signing provider
      address       UTF8String,       -- the From: address, an address of the account
      login         UTF8String,       -- one of LOGINS
      soleUseSince  [0] IMPLICIT GeneralizedTime OPTIONAL,
      identity      [1] IMPLICIT IdentityVerification OPTIONAL }
    IdentityVerification ::= SEQUENCE {
      level UTF8String, method UTF8String, verifiedOn GeneralizedTime }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from securemail.smime import asn1, der, oids
from securemail.smime.errors import Reason, SmimeError

# Weakest first. "app-password-totp": an app password created while the account had a
# confirmed second factor (the session that made it passed TOTP); "password-totp": the
# password and a TOTP code at this login (webmail).
LOGINS = ("password", "app-password", "app-password-totp", "password-totp")
_MAX_NAME = 320  # octets: an RFC 5321 path is at most 256, an org id far less
_MAX_TEXT = 200


@dataclass(frozen=True)
class IdentityCheck:
    """The provider's verification of the holder's identity: level, method, date."""

    level: str  # as the provider's assessment names it, e.g. a level of a standard
    method: str  # how, in a few words ("in person, passport")
    verified_on: date

    def __post_init__(self) -> None:
        for name in (self.level, self.method):
            _check_text(name, _MAX_TEXT)


@dataclass(frozen=True)
class SenderAssurance:
    """One provider's assertion about the sender of one message."""

    provider: str
    address: str
    login: str
    sole_use_since: datetime | None = None
    identity: IdentityCheck | None = None

    def __post_init__(self) -> None:
        for name in (self.provider, self.address, self.login):
            _check_text(name, _MAX_NAME)
            if any(c.isspace() for c in name):
                raise ValueError("senderAssurance names hold no white space")

    @property
    def strength(self) -> int:
        """The login's rank in :data:`LOGINS` (an unknown login ranks below them all)."""
        return LOGINS.index(self.login) if self.login in LOGINS else -1


def _check_text(text: str, limit: int) -> None:
    if not 0 < len(text.encode("utf-8")) <= limit or not text.isprintable():
        raise ValueError(f"senderAssurance text must be 1..{limit} octets of printable text")


def encode_sender_assurance(value: SenderAssurance) -> bytes:
    """The DER of ``value`` (module docstring), written directly: it is on every message a
    provider sends, and a schema object costs more than the signature's other attributes."""
    parts = [_utf8(value.provider), _utf8(value.address), _utf8(value.login)]
    if value.sole_use_since is not None:
        parts.append(der.encode(_SOLE_USE_TAG, _generalized(value.sole_use_since)))
    identity = value.identity
    if identity is not None:
        verified = datetime.combine(identity.verified_on, datetime.min.time(), UTC)
        when = der.encode(_GENERALIZED_TIME, _generalized(verified))
        fields = (_utf8(identity.level), _utf8(identity.method), when)
        parts.append(der.encode(_IDENTITY_TAG, *fields))
    return der.encode(der.SEQUENCE, *parts)


_GENERALIZED_TIME = 0x18
_SOLE_USE_TAG = 0x80  # [0] IMPLICIT GeneralizedTime: context-specific, primitive
_IDENTITY_TAG = 0xA1  # [1] IMPLICIT SEQUENCE: context-specific, constructed


def _utf8(text: str) -> bytes:
    return der.encode(der.UTF8_STRING, text.encode("utf-8"))


def _generalized(when: datetime) -> bytes:
    """X.690 §11.7: YYYYMMDDHHMMSSZ, UTC, no fraction."""
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode("ascii")


def read_sender_assurance(attrs: Mapping[str, bytes]) -> SenderAssurance | None:
    """The attribute from the indexed signed attributes, or None; malformed is refused."""
    raw = attrs.get(oids.ATTR_SENDER_ASSURANCE)
    if raw is None:
        return None
    try:
        value = asn1.SenderAssurance.load(raw, strict=True)
        native = value.native
        identity = native["identity"]
        return SenderAssurance(
            provider=native["provider"],
            address=native["address"],
            login=native["login"],
            sole_use_since=native["sole_use_since"],
            identity=None
            if identity is None
            else IdentityCheck(
                identity["level"], identity["method"], identity["verified_on"].date()
            ),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise SmimeError(Reason.MALFORMED, f"senderAssurance: {exc}") from None
