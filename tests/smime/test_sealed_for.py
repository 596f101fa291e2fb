"""The sealedFor signed attribute (profile §2.1): written, read back, refused when bent."""

from __future__ import annotations

import pytest

from securemail.smime import ProtectOptions, Reason, SealedFor, SmimeError, protect, unprotect
from securemail.smime.attributes import encode_sealed_for, read_sealed_for
from securemail.smime.oids import ATTR_SEALED_FOR
from tests.conftest import NOW, Pki
from tests.smime.test_threats_cms import ORIGINAL

SEALED = SealedFor("ministry", ("bob@ministry.govt.nz", "Carol@Ministry.govt.nz"))


def test_sealed_for_survives_sign_encrypt_decrypt_verify(pki: Pki) -> None:
    """The member and recipients the sender sealed for are what the receiver reads."""
    sent = protect(
        ORIGINAL,
        pki.agency.signer,
        [pki.ministry.certificate],
        now=NOW,
        options=ProtectOptions(sealed_for=SEALED),
    )
    opened = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert opened.signature.sealed_for == SEALED
    assert opened.signature.sealed_for.names("carol@ministry.govt.nz")
    assert not opened.signature.sealed_for.names("dave@ministry.govt.nz")


def test_a_message_without_it_reads_as_unsealed(pki: Pki) -> None:
    """No attribute: None, for the receiving gateway's [peer] unsealed rule to decide."""
    sent = protect(ORIGINAL, pki.agency.signer, [pki.ministry.certificate], now=NOW)
    opened = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert opened.signature.sealed_for is None


@pytest.mark.parametrize(
    "value",
    [
        b"\x30\x00",  # no fields
        b"\x30\x0c\x0c\x08provider\x30\x00",  # no recipients
        b"\x30\x0f\x0c\x08provider\x30\x03\x0c\x01 ",  # a name of white space
        b"\x30\x0d\x0c\x08provider\x30\x03\x04\x01a",  # an OCTET STRING, not UTF8String
    ],
)
def test_a_bent_attribute_is_malformed(value: bytes) -> None:
    """A sealedFor that does not follow the ASN.1 of profile §2.1 is refused as malformed."""
    with pytest.raises(SmimeError) as caught:
        read_sealed_for({ATTR_SEALED_FOR: value})
    assert caught.value.reason is Reason.MALFORMED


def test_encoding_is_the_profiles_example() -> None:
    """The DER matches the example that docs/profile.md §2.1 gives other vendors."""
    sealed = SealedFor(
        "provider", ("hemi.walker@securemail.provider.nz", "mere.tane@securemail.provider.nz")
    )
    assert encode_sealed_for(sealed).hex().startswith("30520c0870726f766964657230460c22")
    assert read_sealed_for({ATTR_SEALED_FOR: encode_sealed_for(sealed)}) == sealed
