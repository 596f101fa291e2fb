"""The holder's confirmed verifications, from the heads of their Inbox and Sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from securemail.contacts.holder import Head, confirmed

ID_A = "A" * 22
ID_B = "B" * 22
AGENCY = "securemail-contacts@agency.govt.nz"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _request(ident: str, purpose: str) -> Head:
    return Head(
        AGENCY, "hemi@provider.nz", f"Please confirm your address for {purpose} [{ident}]", T0
    )


def _answer(subject: str, hours: int, to: str = AGENCY) -> Head:
    return Head("hemi@provider.nz", to, subject, T0 + timedelta(hours=hours))


def test_a_confirmation_stands_until_withdrawn() -> None:
    """A confirmed id is listed with its purpose and organisation; once a later withdrawal
    is in Sent it is not; a confirmation to another address is not an answer."""
    requests = [_request(ID_A, "benefit payments"), _request(ID_B, "rates")]
    answers = [_answer(f"Confirm {ID_A}", 1), _answer(f"Confirm {ID_B}", 2)]
    [b, a] = confirmed(requests, answers)
    assert (a.id, a.purpose, a.organisation, a.answer_to) == (
        ID_A,
        "benefit payments",
        "agency.govt.nz",
        AGENCY,
    )
    assert b.confirmed_at == T0 + timedelta(hours=2)
    later = [*answers, _answer(f"Withdraw {ID_A}", 3)]
    assert [c.id for c in confirmed(requests, later)] == [ID_B]
    assert confirmed(requests, [_answer(f"Confirm {ID_A}", 1, to="friend@provider.nz")]) == []


def test_a_confirmation_without_its_request_has_no_purpose() -> None:
    """With the request gone from the Inbox the confirmation is still listed, purpose empty."""
    [only] = confirmed([], [_answer(f"Re: Confirm {ID_A}", 1)])
    assert (only.id, only.purpose) == (ID_A, "")
