"""Verified contacts: the values, and the pure rule for a holder's answer (issue 20 item 3).

An organisation asks a holder to confirm an address for a purpose, requiring some sender
assurance (``strong-auth``, ``sole-use``, ... as in :mod:`securemail.policy.assurance`).
The holder answers from that address with a SecureMail message whose Subject says
``Confirm <id>`` (or later ``Withdraw <id>``); the provider's gateway signs, as on every
message, how the holder logged in (senderAssurance). That signed assertion, verified as
the provider's (:mod:`securemail.unprotect.assurance`), is the attestation: nothing is
recorded that the provider did not sign.

States: ``pending`` → ``verified`` → ``withdrawn`` (by the holder) | ``revoked`` (by the
organisation); a verified contact past ``expires_at`` reads ``expired``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from securemail.policy.assurance import describe, missing_of
from securemail.smime.assurance import SenderAssurance

STATES = ("pending", "verified", "withdrawn", "revoked")
LOCAL_PART = "securemail-contacts"  # where holders answer, in the organisation's first domain
_ANSWER = re.compile(r"\b(confirm|withdraw)\s+([A-Za-z0-9_-]{16,64})\b", re.IGNORECASE)


def new_id() -> str:
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Contact:
    """One verification request and what came of it."""

    id: str
    org_id: str
    address: str
    purpose: str
    require: tuple[str, ...]
    valid_for: timedelta
    state: str
    requested_at: datetime
    verified_at: datetime | None = None
    expires_at: datetime | None = None
    attested: str | None = None  # the verified assertion, in plain words, with its provider
    note: str | None = None  # the last answer's outcome

    def status(self, now: datetime) -> str:
        """The state as of ``now``: a verified contact past its expiry is ``expired``."""
        if self.state == "verified" and self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return self.state


def read_answer(subject: str) -> tuple[str, str] | None:
    """(``confirm`` or ``withdraw``, id) from a holder's Subject, or None."""
    found = _ANSWER.search(subject)
    return None if found is None else (found.group(1).lower(), found.group(2))


def answer(
    contact: Contact,
    action: str,
    *,
    author: str,
    verified: SenderAssurance | None,
    now: datetime,
) -> Contact:
    """``contact`` after the holder's ``action``, from ``author`` with the verified
    assertion ``verified`` (None: none, or not believed); the note says why if unchanged."""
    if author.lower() != contact.address.lower():
        return replace(contact, note=f"an answer from {author}, not from {contact.address}")
    if action == "withdraw":
        if contact.state != "verified":
            return replace(contact, note=f"withdrawal of a {contact.state} contact ignored")
        return replace(contact, state="withdrawn", note="withdrawn by the holder")
    if contact.state != "pending":
        return replace(contact, note=f"confirmation of a {contact.state} contact ignored")
    missing = missing_of(contact.require, verified)
    if missing or verified is None:
        return replace(contact, note=f"not verified: missing {', '.join(missing)}")
    return replace(
        contact,
        state="verified",
        verified_at=now,
        expires_at=now + contact.valid_for,
        attested=f"{verified.provider}: {describe(verified)}",
        note="verified",
    )
