"""Agency rules on sender assurance (docs/assurance.md): which rule covers whom, what is
missing, and what a person reads."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from securemail.policy.assurance import (
    AssuranceRule,
    decide_assurance,
    describe,
    missing_of,
)
from securemail.smime.assurance import IdentityCheck, SenderAssurance

HEMI = "hemi.walker@securemail.provider.nz"
SINCE = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
STRONG = SenderAssurance("provider", HEMI, "password-totp", SINCE)
APP = SenderAssurance("provider", HEMI, "app-password-totp")
WEAK = SenderAssurance("provider", HEMI, "password")


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        (STRONG, ()),
        (APP, ("strong-auth", "sole-use")),
        (WEAK, ("strong-auth", "second-factor", "sole-use")),
        (None, ("strong-auth", "second-factor", "sole-use")),
    ],
)
def test_missing_requirements(value: SenderAssurance | None, missing: tuple[str, ...]) -> None:
    """Each requirement is met only by the verified assertion's own facts."""
    assert missing_of(("strong-auth", "second-factor", "sole-use"), value) == missing


def test_first_covering_rule_decides() -> None:
    """A rule for one mailbox comes before the catch-all; senders elsewhere are untouched."""
    rules = (
        AssuranceRule(("strong-auth",), recipients="benefits@agency.govt.nz", below="refuse"),
        AssuranceRule(("sole-use",), senders="*@securemail.provider.nz"),
    )
    strict = decide_assurance(rules, sender=HEMI, recipient="Benefits@agency.govt.nz", verified=APP)
    assert strict.action == "refuse" and strict.missing == ("strong-auth",)
    assert "a strong login (password and one-time code)" in strict.explain()
    loose = decide_assurance(rules, sender=HEMI, recipient="aroha@agency.govt.nz", verified=APP)
    assert loose.action == "warn" and loose.missing == ("sole-use",)
    other = decide_assurance(
        rules, sender="a@gsp.co.nz", recipient="x@agency.govt.nz", verified=None
    )
    assert other.action == "deliver" and other.rule is None


def test_a_rule_names_known_requirements_only() -> None:
    """A misspelt requirement or consequence is a configuration error, not a silent pass."""
    with pytest.raises(ValueError, match="require"):
        AssuranceRule(("strong-login",))
    with pytest.raises(ValueError, match="below"):
        AssuranceRule(("sole-use",), below="drop")  # type: ignore[arg-type]


def test_plain_words() -> None:
    """What a recipient reads: the login, sole use and identity, in words."""
    full = SenderAssurance(
        "provider",
        HEMI,
        "password-totp",
        SINCE,
        IdentityCheck("level 2", "in person", date(2026, 11, 20)),
    )
    assert describe(full) == (
        "strong login (password and one-time code), sole use since 3 Dec 2026, identity "
        "verified by the provider (level 2, in person, 20 Nov 2026)"
    )
    assert describe(WEAK) == (
        "password only, sole use not acknowledged, identity not verified by the provider"
    )
