"""Whose sender assurance is believed: the From: domain's provider's, about that From:."""

from __future__ import annotations

import dataclasses

import pytest

from securemail.directory.model import Member
from securemail.policy.assurance import AssuranceRule
from securemail.smime.assurance import SenderAssurance
from securemail.unprotect.assurance import assess, judge_assurance
from tests.conftest import Pki
from tests.directory.conftest import member_of

HEMI = "hemi.walker@securemail.provider.nz"
CLAIM = SenderAssurance("provider", HEMI, "password-totp")


def _member(pki: Pki, org_id: str, roles: tuple[str, ...] = ("gateway",)) -> Member:
    return dataclasses.replace(member_of(pki.agency, org_id), roles=roles)


@pytest.mark.parametrize(
    ("roles", "claim", "problem"),
    [
        (("gateway", "msp"), CLAIM, None),
        (("gateway",), CLAIM, "not-a-provider"),
        (("gateway", "msp"), dataclasses.replace(CLAIM, provider="agency"), "provider-mismatch"),
        (("gateway", "msp"), dataclasses.replace(CLAIM, address="mere@x.nz"), "address-mismatch"),
    ],
)
def test_judged(
    pki: Pki,
    roles: tuple[str, ...],
    claim: SenderAssurance,
    problem: str | None,
) -> None:
    """Believed only from a provider, in its own name, about the From: address."""
    signer = _member(pki, "provider", roles)
    judged = judge_assurance(claim, signer=signer, author=HEMI.upper())
    assert judged is not None and judged.problem == problem
    assert (judged.verified is None) is (problem is not None)


def test_unverified_claims_meet_no_requirement(pki: Pki) -> None:
    """An unverified strong-login claim is treated as no assurance: the rule refuses."""
    signer = _member(pki, "agency")  # a gateway, not a provider
    judged = judge_assurance(CLAIM, signer=signer, author=HEMI)
    rules = (AssuranceRule(("strong-auth",), below="refuse"),)
    assessed = assess(judged, rules, author=HEMI, recipients=("aroha@agency.govt.nz",))
    assert assessed.refused == (
        (
            "aroha@agency.govt.nz",
            "sender assurance below this organisation's policy: missing a strong login "
            "(password and one-time code)",
        ),
    )
    assert assessed.event is not None and "unverified (not-a-provider)" in assessed.event
