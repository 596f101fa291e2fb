"""Path validation of signer certificates, and how long a validated path is remembered."""

from __future__ import annotations

from datetime import timedelta

import pytest

from securemail.pki.authority import make_crl
from securemail.smime import Reason, SmimeError, TrustStore
from tests.conftest import NOW, Pki


def test_valid_signer_path_ends_at_the_anchor(pki: Pki) -> None:
    """A member certificate validates to the federation root."""
    path = pki.trust().validate(pki.agency.certificate, now=NOW)
    assert path.signer == pki.agency.certificate
    assert path.anchor == pki.ca.certificate


def test_cached_result_does_not_outlive_the_crl(pki: Pki) -> None:
    """A validation remembered by the store is redone once the CRL's nextUpdate has passed."""
    store = pki.trust()
    first = store.validate(pki.agency.certificate, now=NOW)
    assert store.validate(pki.agency.certificate, now=NOW + timedelta(days=1)) is first
    assert first.valid_until == pki.crl.next_update_utc
    with pytest.raises(SmimeError) as refused:
        store.validate(pki.agency.certificate, now=NOW + timedelta(days=8))
    assert refused.value.reason is Reason.REVOCATION_UNKNOWN


def test_revoked_signer_refused_even_when_revocation_optional(pki: Pki) -> None:
    """require_revocation=False still refuses a certificate the CRL lists."""
    with pytest.raises(SmimeError) as refused:
        pki.trust(require_revocation=False).validate(pki.revoked.certificate, now=NOW)
    assert refused.value.reason is Reason.REVOKED


def test_missing_crl_fails_by_default_and_passes_when_allowed(pki: Pki) -> None:
    """Without a CRL the default store refuses; an explicitly relaxed store accepts."""
    with pytest.raises(SmimeError) as refused:
        TrustStore([pki.ca.certificate]).validate(pki.agency.certificate, now=NOW)
    assert refused.value.reason is Reason.REVOCATION_UNKNOWN
    relaxed = TrustStore([pki.ca.certificate], require_revocation=False)
    assert relaxed.validate(pki.agency.certificate, now=NOW).anchor == pki.ca.certificate


def test_new_crl_revokes_a_previously_valid_signer(pki: Pki) -> None:
    """A store built with a newer CRL refuses a signer the old store accepted."""
    assert pki.trust().validate(pki.agency.certificate, now=NOW)
    newer = TrustStore([pki.ca.certificate], [make_crl(pki.ca, [pki.agency.certificate], now=NOW)])
    with pytest.raises(SmimeError) as refused:
        newer.validate(pki.agency.certificate, now=NOW)
    assert refused.value.reason is Reason.REVOKED


def test_store_needs_an_anchor() -> None:
    """An empty trust store is a configuration error, not an open door."""
    with pytest.raises(ValueError, match="trust anchor"):
        TrustStore([])
