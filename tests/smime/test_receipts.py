"""ESS signed receipts: made only when asked, bound to one original, checked by the sender."""

from __future__ import annotations

import pytest

from securemail.smime import (
    ProtectOptions,
    Reason,
    ReceiptBasis,
    ReceiptRequest,
    SmimeError,
    make_receipt,
    protect,
    receipt_entity,
    unprotect,
    verify_receipt,
)
from securemail.smime.verify import verify_signed_data
from tests.conftest import NOW, Org, Pki

REQUEST = ReceiptRequest(b"cid-receipts", ("gateway@agency.govt.nz",))


def _sent_and_received(
    pki: Pki, message: bytes, receipt_signer: Org | None = None
) -> tuple[ReceiptBasis, bytes]:
    """Agency sends with a receipt request; the receipt is signed by ministry (or another)."""
    sent = protect(
        message,
        pki.agency.signer,
        [pki.ministry.certificate],
        now=NOW,
        options=ProtectOptions(receipt_request=REQUEST),
    )
    received = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    assert sent.receipt_basis is not None
    signer = (receipt_signer or pki.ministry).signer
    return sent.receipt_basis, make_receipt(received.signature, signer, now=NOW)


def test_receipt_verifies_for_its_original(pki: Pki, message: bytes) -> None:
    """A receipt from the receiving gateway verifies, as DER and as an S/MIME entity."""
    basis, receipt = _sent_and_received(pki, message)
    for form in (receipt, receipt_entity(receipt)):
        verified = verify_receipt(form, basis, trust=pki.trust(), now=NOW)
        assert verified.signer == pki.ministry.certificate
        assert verified.content_identifier == REQUEST.content_identifier
        assert verified.signing_time == NOW


def test_receipt_carries_msg_sig_digest_and_receipt_content_type(pki: Pki, message: bytes) -> None:
    """The receipt is id-ct-receipt SignedData with msgSigDigest (RFC 2634 §2.7, §2.8)."""
    _, receipt = _sent_and_received(pki, message)
    _, signature = verify_signed_data(receipt)
    assert signature.content_type == "1.2.840.113549.1.9.16.1.1"
    assert signature.msg_sig_digest is not None
    assert len(signature.msg_sig_digest) == 32


def test_no_receipt_unless_requested(pki: Pki, message: bytes) -> None:
    """A message without a receipt request gets no receipt."""
    sent = protect(message, pki.agency.signer, [pki.ministry.certificate], now=NOW)
    assert sent.receipt_basis is None
    received = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    with pytest.raises(SmimeError) as refused:
        make_receipt(received.signature, pki.ministry.signer, now=NOW)
    assert refused.value.reason is Reason.RECEIPT_NOT_REQUESTED


def test_receipt_from_revoked_gateway_refused(pki: Pki, message: bytes) -> None:
    """A receipt signed with a revoked certificate is refused as revoked."""
    basis, receipt = _sent_and_received(pki, message, receipt_signer=pki.revoked)
    with pytest.raises(SmimeError) as refused:
        verify_receipt(receipt, basis, trust=pki.trust(), now=NOW)
    assert refused.value.reason is Reason.REVOKED


def test_duplicate_receipt_verifies_identically(pki: Pki, message: bytes) -> None:
    """Verifying the same receipt twice gives the same answer (the caller de-duplicates)."""
    basis, receipt = _sent_and_received(pki, message)
    first = verify_receipt(receipt, basis, trust=pki.trust(), now=NOW)
    second = verify_receipt(receipt, basis, trust=pki.trust(), now=NOW)
    assert first == second


def test_basis_json_round_trip_and_errors(pki: Pki, message: bytes) -> None:
    """The receipt basis survives JSON; damaged JSON is refused as malformed."""
    basis, receipt = _sent_and_received(pki, message)
    restored = ReceiptBasis.from_json(basis.to_json())
    assert restored == basis
    assert verify_receipt(receipt, restored, trust=pki.trust(), now=NOW)
    for broken in ("{}", "not json", '{"digest_algorithm": "md5"}'):
        with pytest.raises(SmimeError) as refused:
            ReceiptBasis.from_json(broken)
        assert refused.value.reason is Reason.MALFORMED


def test_receipt_is_not_a_message(pki: Pki, message: bytes) -> None:
    """A receipt fed to unprotect is refused: receipts are not deliverable messages."""
    _, receipt = _sent_and_received(pki, message)
    entity = b"From: gateway@ministry.govt.nz\r\n" + receipt_entity(receipt)
    with pytest.raises(SmimeError) as refused:
        unprotect(entity, identities=[], trust=pki.trust(), now=NOW)
    assert refused.value.reason is Reason.MALFORMED


def test_msg_sig_digest_uses_the_original_digest_algorithm(pki: Pki, message: bytes) -> None:
    """An original signed with SHA-384 gets a 48-byte msgSigDigest even in a SHA-256 receipt."""
    sent = protect(
        message,
        pki.agency.signer,
        [pki.ministry.certificate],
        now=NOW,
        options=ProtectOptions(digest="sha384", receipt_request=REQUEST),
    )
    received = unprotect(
        sent.message, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW
    )
    receipt = make_receipt(received.signature, pki.ministry.signer, now=NOW, digest="sha256")
    _, signature = verify_signed_data(receipt)
    assert signature.digest_algorithm == "sha256"
    assert signature.msg_sig_digest is not None
    assert len(signature.msg_sig_digest) == 48
    assert sent.receipt_basis is not None
    assert verify_receipt(receipt, sent.receipt_basis, trust=pki.trust(), now=NOW)
