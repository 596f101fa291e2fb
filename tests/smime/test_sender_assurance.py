"""The senderAssurance signed attribute (profile §2.2): written, read back, bound by the
signature, refused when bent."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import pytest

from securemail.smime import (
    IdentityCheck,
    ProtectOptions,
    Reason,
    SenderAssurance,
    SmimeError,
    protect,
    sign_message,
    unprotect,
)
from securemail.smime.assurance import encode_sender_assurance, read_sender_assurance
from securemail.smime.oids import ATTR_SENDER_ASSURANCE
from tests.conftest import NOW, Pki
from tests.smime.test_threats_cms import ORIGINAL

FULL = SenderAssurance(
    provider="provider",
    address="hemi.walker@securemail.provider.nz",
    login="password-totp",
    sole_use_since=datetime(2026, 12, 3, 9, 30, tzinfo=UTC),
    identity=IdentityCheck("level 2", "in person, passport", date(2026, 11, 20)),
)


def test_assurance_survives_sign_encrypt_decrypt_verify(pki: Pki) -> None:
    """What the provider signed is what the receiving gateway reads, field for field."""
    sent = protect(
        ORIGINAL,
        pki.agency.signer,
        [pki.ministry.certificate],
        now=NOW,
        options=ProtectOptions(sender_assurance=FULL),
    )
    opened = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert opened.signature.sender_assurance == FULL


def test_without_it_there_is_none(pki: Pki) -> None:
    """Mail no holder submitted (a gateway's relayed mail) carries no assertion."""
    sent = protect(ORIGINAL, pki.agency.signer, [pki.ministry.certificate], now=NOW)
    opened = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert opened.signature.sender_assurance is None


def test_an_edited_assertion_breaks_the_signature(pki: Pki) -> None:
    """Upgrading the signed login in transit ("app-password" to "password-tot") is a bad
    signature: the message is not verified at all, let alone its assurance."""
    weak = SenderAssurance("provider", "alice@agency.govt.nz", "app-password")
    signed = sign_message(
        ORIGINAL, pki.agency.signer, now=NOW, options=ProtectOptions(sender_assurance=weak)
    ).message
    head, _, body = signed.partition(b"\r\n\r\n")
    der = base64.b64decode(body)
    assert der.count(b"app-password") == 1
    edited = base64.encodebytes(der.replace(b"app-password", b"password-tot"))
    with pytest.raises(SmimeError) as caught:
        unprotect(head + b"\r\n\r\n" + edited, identities=[], trust=pki.trust(), now=NOW)
    assert caught.value.reason is Reason.SIGNATURE_INVALID


def test_encoding_is_the_profiles_example() -> None:
    """The DER is the example docs/profile.md §2.2 gives other vendors, and reads back."""
    minimal = SenderAssurance("provider", "mere.tane@securemail.provider.nz", "password")
    assert encode_sender_assurance(minimal).hex() == (
        "30360c0870726f76696465720c206d6572652e74616e65407365637572656d61696c2e70726f7669"
        "6465722e6e7a0c0870617373776f7264"
    )
    encoded = encode_sender_assurance(FULL)
    assert encoded.hex().endswith("180f32303236313132303030303030305a")  # 20261120000000Z
    assert read_sender_assurance({ATTR_SENDER_ASSURANCE: encoded}) == FULL


@pytest.mark.parametrize(
    "value",
    [
        b"\x30\x00",  # no fields
        b"\x30\x0a\x0c\x08provider",  # no address, no login
        b"\x30\x0f\x0c\x08provider\x0c\x01 \x0c\x00",  # white space and an empty login
        b"\x30\x0e\x0c\x08provider\x0c\x01a\x04\x01p",  # an OCTET STRING, not UTF8String
    ],
)
def test_a_bent_attribute_is_malformed(value: bytes) -> None:
    """A senderAssurance that does not follow the ASN.1 of profile §2.2 is malformed."""
    with pytest.raises(SmimeError) as caught:
        read_sender_assurance({ATTR_SENDER_ASSURANCE: value})
    assert caught.value.reason is Reason.MALFORMED


def test_an_unknown_login_ranks_below_every_known_one() -> None:
    """A login word from a later profile is kept as said and ranks weakest here."""
    later = SenderAssurance("provider", "a@b.nz", "passkey")
    assert later.strength == -1 < SenderAssurance("provider", "a@b.nz", "password").strength
