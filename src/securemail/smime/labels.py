"""ESS security labels (RFC 2634 §3) under the SecureMail label policy.

A label is signed into the message, so the receiving gateway knows the sender's
classification of it. Classification values are the policy's own (RFC 2634 lets a policy
define them); the privacy mark carries endorsements such as ``PERSONAL``.

ESSSecurityLabel ::= SET { security-policy-identifier OBJECT IDENTIFIER,
                           security-classification INTEGER OPTIONAL,
                           privacy-mark CHOICE { PrintableString, UTF8String } OPTIONAL,
                           security-categories SET OF SecurityCategory OPTIONAL }
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core

from securemail.smime import der, oids
from securemail.smime.errors import Reason, SmimeError

CLASSIFICATIONS: dict[str, int] = {
    "UNCLASSIFIED": 1,
    "IN-CONFIDENCE": 2,
    "SENSITIVE": 3,
    "RESTRICTED": 4,
}
_NAMES = {value: name for name, value in CLASSIFICATIONS.items()}
MAX_PRIVACY_MARK = 128


class _Members(core.SetOf):  # type: ignore[misc]
    """The label's members as raw values: its privacy mark is an untagged CHOICE."""

    _child_spec = core.Any


@dataclass(frozen=True)
class SecurityLabel:
    """A classification (one of CLASSIFICATIONS, or None) and an optional privacy mark."""

    classification: str | None
    privacy_mark: str | None = None
    policy: str = oids.SECUREMAIL_LABEL_POLICY

    def __post_init__(self) -> None:
        if self.classification is not None and self.classification not in CLASSIFICATIONS:
            known = ", ".join(CLASSIFICATIONS)
            raise ValueError(f"unknown classification {self.classification!r} (known: {known})")
        if self.privacy_mark is not None:
            if not self.privacy_mark or len(self.privacy_mark) > MAX_PRIVACY_MARK:
                raise ValueError(f"privacy mark must be 1..{MAX_PRIVACY_MARK} characters")
            if any(ord(c) < 0x20 or c == "\x7f" for c in self.privacy_mark):
                raise ValueError("privacy mark must not contain control characters")

    @property
    def marking(self) -> str:
        """The protective marking text, e.g. ``IN-CONFIDENCE`` or ``IN-CONFIDENCE PERSONAL``."""
        parts = [p for p in (self.classification, self.privacy_mark) if p]
        return " ".join(parts) or "UNMARKED"


def encode_label(label: SecurityLabel) -> bytes:
    """DER of the ESSSecurityLabel SET (members in DER SET order, i.e. by tag)."""
    members = [der.oid(label.policy)]
    if label.classification is not None:
        members.append(der.integer(CLASSIFICATIONS[label.classification]))
    if label.privacy_mark is not None:
        members.append(bytes(core.UTF8String(label.privacy_mark).dump()))
    return der.der_set(members)


def decode_label(value: bytes) -> SecurityLabel:
    """Read an ESSSecurityLabel; unknown policies and classifications are refused."""
    try:
        policy = classification = mark = None
        for member in (core.load(m.dump()) for m in _Members.load(value)):
            if isinstance(member, core.ObjectIdentifier) and policy is None:
                policy = member.dotted
            elif isinstance(member, core.Integer) and classification is None:
                classification = member.native
            elif isinstance(member, core.UTF8String | core.PrintableString) and mark is None:
                mark = member.native
            elif not isinstance(member, core.SetOf | core.Set):  # categories: not used
                raise ValueError(f"unexpected member {type(member).__name__}")
    except (ValueError, TypeError) as exc:
        raise SmimeError(Reason.MALFORMED, f"security label: {exc}") from None
    if policy != oids.SECUREMAIL_LABEL_POLICY:
        raise SmimeError(Reason.MALFORMED, f"security label policy {policy} is not SecureMail's")
    if classification is not None and classification not in _NAMES:
        raise SmimeError(Reason.MALFORMED, f"security classification {classification} unknown")
    try:
        return SecurityLabel(None if classification is None else _NAMES[classification], mark)
    except ValueError as exc:
        raise SmimeError(Reason.MALFORMED, f"security label: {exc}") from None
