"""Sender assurance: what an agency requires of mail from outside, and how it is said.

An organisation's ``[[organisation.policy.assurance]]`` rules (docs/assurance.md) each name
the senders (``from``, a pattern on the From: address) and this organisation's recipients
(``to``) they cover, the assurance they require, and what happens below it: ``warn``
(delivered with a warning the recipient sees) or ``refuse`` (a failure notice to the sender
that says what was missing). The first rule that covers a sender and a recipient decides.

Requirements, each met only by a *verified* assertion (the From: domain's provider signed
it, :mod:`securemail.unprotect.assurance`):

- ``strong-auth``: the holder logged in with the password and a one-time code;
- ``second-factor``: that, or an app password created under a confirmed second factor;
- ``sole-use``: the holder had acknowledged being the mailbox's only user;
- ``identity-verified``: the provider had verified the holder's identity.

Pure: values in, a decision out; :func:`describe` says an assertion in plain words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from securemail.smime.assurance import SenderAssurance

REQUIREMENTS = ("strong-auth", "second-factor", "sole-use", "identity-verified")
Below = Literal["warn", "refuse"]
_WORDS = {
    "password": "password only",
    "app-password": "app password (made without a second factor)",
    "app-password-totp": "app password (made under two-factor login)",
    "password-totp": "strong login (password and one-time code)",
}
_MISSING = {
    "strong-auth": "a strong login (password and one-time code)",
    "second-factor": "a login backed by a second factor",
    "sole-use": "sole use of the mailbox acknowledged",
    "identity-verified": "the holder's identity verified by the provider",
}


@dataclass(frozen=True)
class AssuranceRule:
    """One rule: senders and recipients covered, what it requires, what happens below."""

    require: tuple[str, ...]
    senders: str = "*"  # fnmatch pattern on the From: address, compared in lower case
    recipients: str = "*"  # fnmatch pattern on this organisation's recipient
    below: Below = "warn"

    def __post_init__(self) -> None:
        unknown = [r for r in self.require if r not in REQUIREMENTS]
        if unknown or not self.require:
            known = ", ".join(REQUIREMENTS)
            raise ValueError(f"require must list some of {known}, not {list(self.require)}")
        if self.below not in ("warn", "refuse"):
            raise ValueError(f"below must be warn or refuse, not {self.below!r}")

    def covers(self, sender: str, recipient: str) -> bool:
        return fnmatchcase(sender.lower(), self.senders.lower()) and fnmatchcase(
            recipient.lower(), self.recipients.lower()
        )


@dataclass(frozen=True)
class AssuranceDecision:
    """What a rule made of one recipient's copy: nothing missing, or what and so what."""

    rule: AssuranceRule | None
    missing: tuple[str, ...] = ()

    @property
    def action(self) -> Literal["deliver", "warn", "refuse"]:
        if self.rule is None or not self.missing:
            return "deliver"
        return self.rule.below

    def explain(self) -> str:
        """One sentence for the recipient (a warning) or the sender (a failure notice)."""
        if self.rule is None:
            return "no assurance rule covers this sender and recipient"
        if not self.missing:
            return f"meets the required {', '.join(self.rule.require)}"
        return "sender assurance below this organisation's policy: missing " + "; ".join(
            _MISSING[m] for m in self.missing
        )


def missing_of(require: Sequence[str], verified: SenderAssurance | None) -> tuple[str, ...]:
    """The requirements a verified assertion (None: no verified assertion) does not meet."""
    return tuple(r for r in require if verified is None or not _meets(r, verified))


def _meets(requirement: str, value: SenderAssurance) -> bool:
    if requirement == "strong-auth":
        return value.login == "password-totp"
    if requirement == "second-factor":
        return value.login in ("password-totp", "app-password-totp")
    if requirement == "sole-use":
        return value.sole_use_since is not None
    return value.identity is not None


def decide_assurance(
    rules: Sequence[AssuranceRule],
    *,
    sender: str,
    recipient: str,
    verified: SenderAssurance | None,
) -> AssuranceDecision:
    """The first rule covering ``sender`` and ``recipient``, and what it finds missing."""
    for rule in rules:
        if rule.covers(sender, recipient):
            return AssuranceDecision(rule, missing_of(rule.require, verified))
    return AssuranceDecision(None)


def describe(value: SenderAssurance) -> str:
    """The assertion in plain words, e.g. "strong login (password and one-time code), sole
    use since 3 Dec 2026, identity not verified by the provider"."""
    words = [_WORDS.get(value.login, f"login {value.login!r} (not known here)")]
    since = value.sole_use_since
    words.append(
        "sole use not acknowledged"
        if since is None
        else f"sole use since {since.day} {since:%b %Y}"
    )
    identity = value.identity
    words.append(
        "identity not verified by the provider"
        if identity is None
        else f"identity verified by the provider ({identity.level}, {identity.method}, "
        f"{identity.verified_on.day} {identity.verified_on:%b %Y})"
    )
    return ", ".join(words)
