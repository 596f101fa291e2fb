"""The rule for a holder's answer to an address verification, and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from securemail.contacts.model import Contact, answer, new_id, read_answer
from securemail.smime.assurance import SenderAssurance

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
HEMI = "hemi.walker@securemail.provider.nz"
ASKED = Contact(
    new_id(),
    "agency",
    HEMI,
    "benefit payments",
    ("strong-auth", "sole-use"),
    timedelta(days=30),
    "pending",
    NOW,
)
STRONG = SenderAssurance("provider", HEMI, "password-totp", NOW - timedelta(days=4))


def test_a_strong_answer_verifies_until_expiry() -> None:
    """The provider's verified assertion meeting every requirement verifies the contact,
    with what was attested, until the validity runs out."""
    done = answer(ASKED, "confirm", author=HEMI.upper(), verified=STRONG, now=NOW)
    assert done.state == "verified" and done.expires_at == NOW + timedelta(days=30)
    assert done.attested is not None and done.attested.startswith("provider: strong login")
    assert done.status(NOW + timedelta(days=29)) == "verified"
    assert done.status(NOW + timedelta(days=30)) == "expired"


def test_what_does_not_verify() -> None:
    """A weaker login, no verified assertion, another author, or an answer to a contact in
    another state changes nothing but the note."""
    weak = SenderAssurance("provider", HEMI, "app-password-totp", NOW)
    for verified, author, note in (
        (weak, HEMI, "not verified: missing strong-auth"),
        (None, HEMI, "not verified: missing strong-auth, sole-use"),
        (STRONG, "mere@securemail.provider.nz", "an answer from mere@"),
    ):
        after = answer(ASKED, "confirm", author=author, verified=verified, now=NOW)
        assert after.state == "pending" and after.note is not None
        assert after.note.startswith(note), after.note
    assert answer(ASKED, "withdraw", author=HEMI, verified=None, now=NOW).state == "pending"


def test_withdrawal_ends_a_verified_contact() -> None:
    """The holder's withdrawal takes a verified contact out; it is not confirmed again."""
    done = answer(ASKED, "confirm", author=HEMI, verified=STRONG, now=NOW)
    gone = answer(done, "withdraw", author=HEMI, verified=None, now=NOW)
    assert gone.state == "withdrawn" and gone.status(NOW) == "withdrawn"
    again = answer(gone, "confirm", author=HEMI, verified=STRONG, now=NOW)
    assert again.state == "withdrawn"


def test_answers_are_read_from_the_subject() -> None:
    """``Confirm <id>`` / ``Withdraw <id>`` anywhere in the Subject, any case."""
    ident = ASKED.id
    assert read_answer(f"Re: please confirm [{ident}] CONFIRM {ident}") == ("confirm", ident)
    assert read_answer(f"withdraw {ident}") == ("withdraw", ident)
    assert read_answer("Confirm me") is None
