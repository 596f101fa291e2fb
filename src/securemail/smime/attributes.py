"""Signed attributes: the ones SecureMail writes, and a strict reader for received ones.

Written (RFC 5652 §11, RFC 8551 §2.5, RFC 5035, RFC 2634): contentType, messageDigest,
signingTime, smimeCapabilities, signingCertificateV2, and when asked the ESS securityLabel
and receiptRequest, and the profile's own sealedFor (the receiving member and envelope
recipients the signature is for). A receipt's signature adds msgSigDigest.

Read: every attribute type at most once, with exactly one value; anything else is
``malformed``. Attributes the profile does not use are carried but not interpreted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, core, tsp, x509

from securemail.smime import algorithms, asn1, der, labels, oids
from securemail.smime.errors import Reason, SmimeError
from securemail.smime.keys import SignerIdentity

MAX_RECEIPT_ADDRESSES = 16
MAX_CONTENT_IDENTIFIER = 128
MAX_SEALED_RECIPIENTS = 1000
_MAX_SEALED_NAME = 320  # octets: an RFC 5321 path is at most 256, an org id far less


@dataclass(frozen=True)
class ReceiptRequest:
    """An ESS receipt request: who should send a receipt, and to which addresses."""

    content_identifier: bytes
    receipts_to: tuple[str, ...]
    first_tier_only: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.content_identifier) <= MAX_CONTENT_IDENTIFIER:
            raise ValueError(f"content identifier must be 1..{MAX_CONTENT_IDENTIFIER} bytes")
        if not 1 <= len(self.receipts_to) <= MAX_RECEIPT_ADDRESSES:
            raise ValueError(f"receipts-to must list 1..{MAX_RECEIPT_ADDRESSES} addresses")


@dataclass(frozen=True)
class SealedFor:
    """The sealedFor attribute: the member (directory org id) that is to open the message,
    and the envelope recipients at that member it is for. Recipients compare case-blind."""

    member: str
    recipients: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.recipients) <= MAX_SEALED_RECIPIENTS:
            raise ValueError(f"sealedFor must name 1..{MAX_SEALED_RECIPIENTS} recipients")
        for name in (self.member, *self.recipients):
            if not 0 < len(name.encode("utf-8")) <= _MAX_SEALED_NAME or not name.isprintable():
                raise ValueError("sealedFor names must be short printable text")
            if any(c.isspace() for c in name):
                raise ValueError("sealedFor names hold no white space")

    def names(self, recipient: str) -> bool:
        """Whether ``recipient`` is one of the envelope recipients sealed for."""
        return recipient.lower() in {r.lower() for r in self.recipients}


def encode_sealed_for(sealed: SealedFor) -> bytes:
    """DER of SealedFor ::= SEQUENCE { member UTF8String, recipients SEQUENCE OF UTF8String }."""
    names = (der.encode(der.UTF8_STRING, r.encode("utf-8")) for r in sealed.recipients)
    return der.encode(
        der.SEQUENCE,
        der.encode(der.UTF8_STRING, sealed.member.encode("utf-8")),
        der.encode(der.SEQUENCE, *names),
    )


# smimeCapabilities, strongest first (RFC 8551 §2.5.2); constant for the profile.
_CAPABILITIES = der.encode(
    der.SEQUENCE,
    *(
        algorithms.algorithm_identifier(oid)
        for oid in (oids.AES256_GCM, oids.AES128_GCM, oids.AES256_CBC, oids.AES128_CBC)
    ),
)


def _attribute(oid: str, value: bytes) -> bytes:
    return der.encode(der.SEQUENCE, der.oid(oid), der.encode(der.SET, value))


def _time(now: datetime) -> bytes:
    # RFC 5652 §11.3: UTCTime for 1950..2049, GeneralizedTime otherwise
    value = core.UTCTime(now) if 1950 <= now.year < 2050 else core.GeneralizedTime(now)
    return bytes(value.dump())


def signing_certificate_v2(signer: SignerIdentity) -> bytes:
    """RFC 5035 SigningCertificateV2 with one ESSCertIDv2 (SHA-256, the DEFAULT, so omitted)."""
    issuer = signer.certificate.issuer.public_bytes()
    general_names = der.encode(der.SEQUENCE, der.encode(0xA4, issuer))
    issuer_serial = der.encode(
        der.SEQUENCE, general_names, der.integer(signer.certificate.serial_number)
    )
    cert_id = der.encode(der.SEQUENCE, der.octet_string(signer.certificate_sha256), issuer_serial)
    return der.encode(der.SEQUENCE, der.encode(der.SEQUENCE, cert_id))


def encode_receipt_request(request: ReceiptRequest) -> bytes:
    receipts_to = [
        x509.GeneralNames([x509.GeneralName("rfc822_name", a)]) for a in request.receipts_to
    ]
    value = asn1.ReceiptRequest(
        {
            "signed_content_identifier": request.content_identifier,
            "receipts_from": asn1.ReceiptsFrom(
                "all_or_first_tier", 1 if request.first_tier_only else 0
            ),
            "receipts_to": receipts_to,
        }
    )
    return bytes(value.dump())


def build_signed_attributes(
    *,
    content_type: str,
    digest: bytes,
    signer: SignerIdentity,
    now: datetime,
    label: labels.SecurityLabel | None = None,
    receipt_request: ReceiptRequest | None = None,
    msg_sig_digest: bytes | None = None,
    sealed_for: SealedFor | None = None,
) -> bytes:
    """DER of the SignedAttributes SET, ready to be signed (RFC 5652 §5.4)."""
    attrs = [
        _attribute(oids.ATTR_CONTENT_TYPE, der.oid(content_type)),
        _attribute(oids.ATTR_SIGNING_TIME, _time(now)),
        _attribute(oids.ATTR_MESSAGE_DIGEST, der.octet_string(digest).join()),
        _attribute(oids.ATTR_SMIME_CAPABILITIES, _CAPABILITIES),
        _attribute(oids.ATTR_SIGNING_CERTIFICATE_V2, signing_certificate_v2(signer)),
    ]
    if label is not None:
        attrs.append(_attribute(oids.ATTR_SECURITY_LABEL, labels.encode_label(label)))
    if receipt_request is not None:
        attrs.append(_attribute(oids.ATTR_RECEIPT_REQUEST, encode_receipt_request(receipt_request)))
    if msg_sig_digest is not None:
        attrs.append(_attribute(oids.ATTR_MSG_SIG_DIGEST, der.octet_string(msg_sig_digest).join()))
    if sealed_for is not None:
        attrs.append(_attribute(oids.ATTR_SEALED_FOR, encode_sealed_for(sealed_for)))
    return der.der_set(attrs)


def index_attributes(signed_attrs: cms.CMSAttributes) -> dict[str, bytes]:
    """Map attribute OID to its single value's DER; refuse repeats and multi-valued ones."""
    out: dict[str, bytes] = {}
    for attr in signed_attrs:
        oid = attr["type"].dotted
        values = attr["values"]
        if oid in out:
            raise SmimeError(Reason.MALFORMED, f"signed attribute {oid} appears twice")
        if len(values) != 1:
            raise SmimeError(Reason.MALFORMED, f"signed attribute {oid} has {len(values)} values")
        out[oid] = bytes(values[0].dump())
    return out


def read_content_type(attrs: Mapping[str, bytes]) -> str:
    return str(_load(core.ObjectIdentifier, attrs, oids.ATTR_CONTENT_TYPE).dotted)


def read_message_digest(attrs: Mapping[str, bytes]) -> bytes:
    return bytes(_load(core.OctetString, attrs, oids.ATTR_MESSAGE_DIGEST).native)


def read_signing_time(attrs: Mapping[str, bytes]) -> datetime | None:
    if oids.ATTR_SIGNING_TIME not in attrs:
        return None
    try:
        value = core.load(attrs[oids.ATTR_SIGNING_TIME]).native
    except ValueError as exc:
        raise SmimeError(Reason.MALFORMED, f"signingTime: {exc}") from None
    if not isinstance(value, datetime):
        raise SmimeError(Reason.MALFORMED, "signingTime is not a time")
    return value


def read_label(attrs: Mapping[str, bytes]) -> labels.SecurityLabel | None:
    value = attrs.get(oids.ATTR_SECURITY_LABEL)
    return None if value is None else labels.decode_label(value)


def read_receipt_request(attrs: Mapping[str, bytes]) -> ReceiptRequest | None:
    if oids.ATTR_RECEIPT_REQUEST not in attrs:
        return None
    value = _load(asn1.ReceiptRequest, attrs, oids.ATTR_RECEIPT_REQUEST)
    try:
        addresses = tuple(
            name.native
            for names in value["receipts_to"]
            for name in names
            if name.name == "rfc822_name"
        )
        receipts_from = value["receipts_from"]
        first_tier = receipts_from.name == "all_or_first_tier" and receipts_from.chosen.native == 1
        return ReceiptRequest(value["signed_content_identifier"].native, addresses, first_tier)
    except ValueError as exc:
        raise SmimeError(Reason.MALFORMED, f"receiptRequest: {exc}") from None


def read_msg_sig_digest(attrs: Mapping[str, bytes]) -> bytes | None:
    if oids.ATTR_MSG_SIG_DIGEST not in attrs:
        return None
    return bytes(_load(core.OctetString, attrs, oids.ATTR_MSG_SIG_DIGEST).native)


def read_sealed_for(attrs: Mapping[str, bytes]) -> SealedFor | None:
    if oids.ATTR_SEALED_FOR not in attrs:
        return None
    value = _load(asn1.SealedFor, attrs, oids.ATTR_SEALED_FOR)
    try:
        recipients = tuple(str(r.native) for r in value["recipients"])
        return SealedFor(str(value["member"].native), recipients)
    except ValueError as exc:
        raise SmimeError(Reason.MALFORMED, f"sealedFor: {exc}") from None


def check_signing_certificate(attrs: Mapping[str, bytes], certificate_der: bytes) -> None:
    """RFC 5035: if signingCertificateV2 is present its first ESSCertIDv2 must name the signer."""
    if oids.ATTR_SIGNING_CERTIFICATE_V2 not in attrs:
        return
    value = _load(tsp.SigningCertificateV2, attrs, oids.ATTR_SIGNING_CERTIFICATE_V2, full=False)
    try:
        cert_id = value["certs"][0]
        hash_name = algorithms.digest_name(cert_id["hash_algorithm"]["algorithm"].dotted)
        expected = cert_id["cert_hash"].native
    except (ValueError, IndexError, KeyError) as exc:
        raise SmimeError(Reason.MALFORMED, f"signingCertificateV2: {exc}") from None
    if hashlib.new(hash_name, certificate_der).digest() != expected:
        raise SmimeError(
            Reason.SIGNATURE_INVALID, "signingCertificateV2 does not name the signer's certificate"
        )


def _load(
    spec: type[core.Asn1Value], attrs: Mapping[str, bytes], oid: str, *, full: bool = True
) -> core.Asn1Value:
    """Load one attribute value; ``full`` parses it all now so errors surface here.

    Without ``full`` the caller reads only the parts it needs, under its own error handling
    (a full parse of signingCertificateV2's GeneralNames costs more than the signature).
    """
    try:
        value = spec.load(attrs[oid], strict=True)
        if full:
            value.native  # noqa: B018
    except KeyError:
        raise SmimeError(Reason.MALFORMED, f"signed attribute {oid} is missing") from None
    except (ValueError, TypeError) as exc:
        raise SmimeError(Reason.MALFORMED, f"signed attribute {oid}: {exc}") from None
    return value
