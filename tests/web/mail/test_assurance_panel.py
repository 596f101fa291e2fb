"""The verification panel's sender assurance: the gateway's fields said in plain words,
unverified claims said as such, a policy warning shown; nothing from outside believed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from securemail.deliver.seal import Origin
from securemail.directory import Directory
from securemail.marking import Verdict as Marked
from securemail.marking import mark_verified
from securemail.smime.assurance import IdentityCheck, SenderAssurance
from tests.conftest import MESSAGE
from tests.web.mail.test_verification import KEYWORD, MARKED, verdict

AUTHOR = MARKED.from_address
SINCE = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def _marked(**changes: object) -> Marked:
    return dataclasses.replace(MARKED, **changes)  # type: ignore[arg-type]


def test_a_verified_assertion_in_plain_words(directory: Directory) -> None:
    """Strong login, sole use and identity, as the gateway marked them."""
    identity = IdentityCheck("level 2", "in person, passport", date(2026, 11, 20))
    value = SenderAssurance("agency", AUTHOR, "password-totp", SINCE, identity)
    result = verdict(mark_verified(MESSAGE, _marked(assurance=value)), directory)
    assert result.verified and result.assurance == (
        "Strong login (password and one-time code), sole use since 3 Dec 2026, identity "
        "verified by the provider (level 2, in person, passport, 20 Nov 2026)"
    )


def test_weaker_logins_say_so(directory: Directory) -> None:
    """An app password and a password alone are named, never called strong."""
    for login, words in (
        ("app-password-totp", "App password (made under two-factor login), sole use not"),
        ("password", "Password only, sole use not acknowledged"),
    ):
        value = SenderAssurance("agency", AUTHOR, login)
        result = verdict(mark_verified(MESSAGE, _marked(assurance=value)), directory)
        assert result.assurance is not None and result.assurance.startswith(words)


def test_an_unverified_claim_and_a_policy_warning(directory: Directory) -> None:
    """A claim the gateway did not believe shows why, not the level it claims; a message
    below the organisation's minimum shows the gateway's warning."""
    claim = SenderAssurance("provider", AUTHOR, "password-totp", SINCE)
    marked = _marked(
        assurance=claim,
        assurance_problem="not-a-provider",
        assurance_warning="sender assurance below this organisation's policy: missing x",
    )
    result = verdict(mark_verified(MESSAGE, marked), directory)
    assert result.assurance == (
        "Not verified: the signer is not this sender's mail provider (not-a-provider)"
    )
    assert result.warning is not None and "below this organisation's policy" in result.warning


def test_assurance_fields_from_outside_are_not_believed(directory: Directory) -> None:
    """A sender's own X-SecureMail-Status claiming a strong login is stripped by the gateway:
    the panel shows no assurance, and without the seal nothing at all."""
    forged = b"X-SecureMail-Status: verified; assurance=verified; login=password-totp\r\n"
    result = verdict(mark_verified(forged + MESSAGE, MARKED), directory)
    assert result.verified and result.assurance is None
    unsealed = verdict(forged + MESSAGE, directory, origin=None, keywords=KEYWORD)
    assert not unsealed.verified and unsealed.assurance is None
    assert verdict(forged + MESSAGE, directory, origin=Origin.DELIVERED).assurance is None
