"""ESS signed receipts (RFC 2634 §2): make one for a verified message, check one we got back.

A receipt is SignedData whose content is a Receipt (the original's content type, signed
content identifier and signature value) and whose signed attributes carry msgSigDigest, the
digest of the original's signed attributes under the original's digest algorithm. Together
they bind the receipt to exactly one original signature: replayed onto another message it
fails (``receipt-mismatch``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from securemail.smime import algorithms, asn1, limits, mime, oids, sign, verify
from securemail.smime.algorithms import DigestName
from securemail.smime.errors import Reason, SmimeError
from securemail.smime.keys import SignerIdentity
from securemail.smime.trust import TrustStore, ValidatedPath


@dataclass(frozen=True)
class ReceiptBasis:
    """What the sender of a receipt-requested message keeps to check the receipt later."""

    content_type: str
    content_identifier: bytes
    signature_value: bytes
    signed_attributes: bytes
    digest_algorithm: DigestName

    @classmethod
    def of(cls, signature: verify.Signature) -> ReceiptBasis:
        """The basis of a verified original signature that requested a receipt."""
        if signature.receipt_request is None:
            raise SmimeError(Reason.RECEIPT_NOT_REQUESTED, "the message asked for no receipt")
        return cls(
            signature.content_type,
            signature.receipt_request.content_identifier,
            signature.signature_value,
            signature.signed_attributes,
            signature.digest_algorithm,
        )

    def to_json(self) -> str:
        def b64(value: bytes) -> str:
            return base64.b64encode(value).decode("ascii")

        return json.dumps(
            {
                "content_type": self.content_type,
                "content_identifier": b64(self.content_identifier),
                "signature_value": b64(self.signature_value),
                "signed_attributes": b64(self.signed_attributes),
                "digest_algorithm": self.digest_algorithm,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ReceiptBasis:
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(
                str(data["content_type"]),
                base64.b64decode(data["content_identifier"], validate=True),
                base64.b64decode(data["signature_value"], validate=True),
                base64.b64decode(data["signed_attributes"], validate=True),
                algorithms.digest_name(algorithms.DIGEST_OIDS[data["digest_algorithm"]]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SmimeError(Reason.MALFORMED, f"receipt basis: {exc}") from None


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt that matched its original and whose signer is trusted."""

    signer: x509.Certificate
    path: ValidatedPath
    signing_time: datetime | None
    content_identifier: bytes


def make_receipt(
    original: verify.Signature,
    signer: SignerIdentity,
    *,
    now: datetime,
    digest: DigestName = "sha256",
) -> bytes:
    """Return the DER ContentInfo of a signed receipt for a verified ``original``."""
    basis = ReceiptBasis.of(original)
    if basis.content_type == oids.ID_CT_RECEIPT:
        raise SmimeError(Reason.RECEIPT_NOT_REQUESTED, "never a receipt for a receipt")
    receipt = asn1.Receipt(
        {
            "version": 1,
            "content_type": basis.content_type,
            "signed_content_identifier": basis.content_identifier,
            "originator_signature_value": basis.signature_value,
        }
    ).dump()
    msg_sig_digest = hashlib.new(basis.digest_algorithm, basis.signed_attributes).digest()
    signed = sign.sign(
        bytes(receipt),
        signer,
        now=now,
        digest=digest,
        content_type=oids.ID_CT_RECEIPT,
        msg_sig_digest=msg_sig_digest,
    )
    return signed.der.join()


def receipt_entity(receipt_der: bytes) -> bytes:
    """The receipt as an S/MIME entity (``smime-type=signed-receipt``, RFC 2634 §2.4)."""
    return mime.entity_header("signed-receipt") + mime.CRLF + mime.encode_base64(receipt_der)


def _receipt_der(data: bytes, bounds: limits.Limits) -> bytes:
    if data[:1] == b"\x30":
        return data
    return mime.read_entity(data, bounds).der


def verify_receipt(
    receipt: bytes,
    basis: ReceiptBasis,
    *,
    trust: TrustStore,
    now: datetime,
    bounds: limits.Limits = limits.Limits(),
) -> VerifiedReceipt:
    """Check that ``receipt`` (DER or S/MIME entity) answers the original in ``basis``."""
    bounds.check_size(receipt, "receipt")
    der = _receipt_der(receipt, bounds)
    limits.check_der(der, bounds)
    content, signature = verify.verify_signed_data(der)
    if signature.content_type != oids.ID_CT_RECEIPT:
        raise SmimeError(Reason.MALFORMED, "signed content is not a receipt")
    try:
        value = asn1.Receipt.load(content, strict=True)
        fields = (
            value["version"].native,
            value["content_type"].dotted,
            value["signed_content_identifier"].native,
            value["originator_signature_value"].native,
        )
    except (ValueError, TypeError) as exc:
        raise SmimeError(Reason.MALFORMED, f"receipt content: {exc}") from None
    version, content_type, identifier, signature_value = fields
    expected_digest = hashlib.new(basis.digest_algorithm, basis.signed_attributes).digest()
    checks = (
        version == 1,
        content_type == basis.content_type,
        hmac.compare_digest(identifier, basis.content_identifier),
        hmac.compare_digest(signature_value, basis.signature_value),
        signature.msg_sig_digest is not None
        and hmac.compare_digest(signature.msg_sig_digest, expected_digest),
    )
    if not all(checks):
        raise SmimeError(Reason.RECEIPT_MISMATCH, "receipt is not bound to this original signature")
    others = [c for c in signature.certificates if c != signature.signer]
    path = trust.validate(signature.signer, now=now, intermediates=others)
    return VerifiedReceipt(signature.signer, path, signature.signing_time, identifier)
