"""A receipt-requested exchange between two test gateways, made once per session."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from securemail.evidence import Evidence
from securemail.smime import ProtectOptions, ReceiptRequest, make_receipt, protect, unprotect
from tests.conftest import MESSAGE, NOW, Org, Pki

REQUEST = ReceiptRequest(b"cid-evidence-1", ("receipts@agency.govt.nz",))


@dataclass(frozen=True)
class Exchange:
    """What the sender kept (the SignedData) and what the receiver sent back."""

    signed_data: bytes
    receipt: bytes
    evidence: Evidence


def exchange(pki: Pki, message: bytes = MESSAGE, receipt_signer: Org | None = None) -> Exchange:
    """Agency sends ``message`` asking for a receipt; ministry (or another) signs the receipt."""
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
    assert sent.signed_data is not None
    signer = (receipt_signer or pki.ministry).signer
    evidence = Evidence(
        original_message_id="<test-1@agency.govt.nz>",
        content_digest="sha256:" + hashlib.sha256(received.content).hexdigest(),
        content_identifier=REQUEST.content_identifier.hex(),
        recipient="bob@ministry.govt.nz",
        delivered_at=NOW,
        receiving_org="ministry",
        receiving_gateway="gw1.ministry.govt.nz",
    )
    receipt = make_receipt(received.signature, signer, now=NOW)
    return Exchange(sent.signed_data, receipt, evidence)


@pytest.fixture(scope="session")
def sent(pki: Pki) -> Exchange:
    return exchange(pki)
