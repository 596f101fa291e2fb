"""Whether a sender assurance is the provider's word: only then is it shown as verified.

A senderAssurance attribute (profile §2.2) is believed only when all of these hold, on top
of everything that made the message verified (signature, chain, the signer's directory
entry owns the From: domain):

- the signer's directory entry lists the ``msp`` role (a mail service provider: only a
  provider has mailbox holders who log in; an agency or a gateway service provider that
  signs one is asserting what it cannot know);
- the attribute names the signer as its ``provider``;
- the attribute is about the message's From: address.

Anything else is shown as unverified, never as the level it claims, and never hides the
message: the signature itself is good. An attribute edited in transit breaks the signature,
so that message is not verified at all (quarantined, like any bad signature).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from securemail.directory.model import Member
from securemail.policy.assurance import AssuranceRule, decide_assurance, describe
from securemail.smime.assurance import SenderAssurance

PROVIDER_ROLE = "msp"


@dataclass(frozen=True)
class Judged:
    """An assertion and whether it is believed: ``problem`` None means verified."""

    assertion: SenderAssurance
    problem: str | None = None  # a reason code: not-a-provider, provider-mismatch, ...

    @property
    def verified(self) -> SenderAssurance | None:
        return self.assertion if self.problem is None else None


def judge_assurance(
    assertion: SenderAssurance | None, *, signer: Member, author: str
) -> Judged | None:
    """The verdict on the signed ``assertion`` of a message ``signer`` signed for ``author``
    (the From: address), or None if the signature carries none."""
    if assertion is None:
        return None
    if PROVIDER_ROLE not in signer.roles:
        return Judged(assertion, "not-a-provider")
    if assertion.provider != signer.org_id:
        return Judged(assertion, "provider-mismatch")
    if assertion.address.lower() != author.lower():
        return Judged(assertion, "address-mismatch")
    return Judged(assertion)


@dataclass(frozen=True)
class Assessed:
    """The receiving organisation's policy applied to one verified message: the warning
    shown on the delivered copy, the recipients refused (with what was missing, for the
    failure notice), and the history line for ``securemail queue show``."""

    warning: str | None = None
    refused: tuple[tuple[str, str], ...] = ()
    event: str | None = None


def assess(
    judged: Judged | None,
    rules: Sequence[AssuranceRule],
    *,
    author: str,
    recipients: Sequence[str],
) -> Assessed:
    """Each recipient's decision under ``rules`` (see :mod:`securemail.policy.assurance`)."""
    verified = None if judged is None else judged.verified
    decisions = [
        (r, decide_assurance(rules, sender=author, recipient=r, verified=verified))
        for r in recipients
    ]
    warned = [d for _, d in decisions if d.action == "warn"]
    refused = tuple((r, d.explain()) for r, d in decisions if d.action == "refuse")
    return Assessed(
        warning=warned[0].explain() if warned else None,
        refused=refused,
        event=_event(judged),
    )


def _event(judged: Judged | None) -> str | None:
    if judged is None:
        return None
    if judged.problem is not None:
        return f"unverified ({judged.problem}): the signer's claim is not shown"
    return f"verified from {judged.assertion.provider}: {describe(judged.assertion)}"
