"""Who an encrypted message is for, read without a key: what an upstream queue stores and
what tells a missing key from mail for another gateway."""

from __future__ import annotations

from securemail.smime import clear_sign, protect, sign_message
from securemail.smime.envelope import addressed_to, is_ciphertext
from tests.conftest import MESSAGE, NOW, Pki


def test_key_transport_and_key_agreement_recipients_are_named(pki: Pki) -> None:
    """RSA (KeyTransRecipientInfo) and EC (KeyAgreeRecipientInfo) recipients are found by
    their certificates; a certificate the message was not encrypted to is not."""
    both = protect(
        MESSAGE, pki.agency.signer, [pki.ministry.certificate, pki.council.certificate], now=NOW
    ).message
    assert addressed_to(both, [pki.ministry.certificate])
    assert addressed_to(both, [pki.council.certificate])
    assert not addressed_to(both, [pki.agency.certificate])
    assert not addressed_to(both, [])


def test_only_an_envelope_is_ciphertext(pki: Pki) -> None:
    """An encrypted message is ciphertext; signed-only (either form), plain or garbage
    messages are not, and name no recipient."""
    encrypted = protect(MESSAGE, pki.agency.signer, [pki.ministry.certificate], now=NOW).message
    assert is_ciphertext(encrypted)
    readable = (
        clear_sign(MESSAGE, pki.agency.signer, now=NOW),
        sign_message(MESSAGE, pki.agency.signer, now=NOW).message,
        MESSAGE,
        b"Content-Type: application/pkcs7-mime\r\n\r\nnot base64 at all\r\n",
    )
    for message in readable:
        assert not is_ciphertext(message)
        assert not addressed_to(message, [pki.ministry.certificate])
