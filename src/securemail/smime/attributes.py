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
from functools import lru_cache

from asn1crypto import core, x509
from cryptography.x509 import Certificate

from securemail.smime import algorithms, asn1, assurance, der, labels, oids
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
    return _signing_certificate_v2(signer.certificate, signer.certificate_sha256)


@lru_cache(maxsize=64)
def _signing_certificate_v2(certificate: Certificate, certificate_sha256: bytes) -> bytes:
    """Cached: a gateway signs with the same certificate all day."""
    issuer = certificate.issuer.public_bytes()
    general_names = der.encode(der.SEQUENCE, der.encode(0xA4, issuer))
    issuer_serial = der.encode(der.SEQUENCE, general_names, der.integer(certificate.serial_number))
    cert_id = der.encode(der.SEQUENCE, der.octet_string(certificate_sha256), issuer_serial)
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
    sender_assurance: assurance.SenderAssurance | None = None,
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
    if sender_assurance is not None:
        encoded = assurance.encode_sender_assurance(sender_assurance)
        attrs.append(_attribute(oids.ATTR_SENDER_ASSURANCE, encoded))
    return der.der_set(attrs)


# The outer tag each value of the profile's attributes must have (their readers check the
# rest); an attribute of another type is carried, not interpreted.
_VALUE_TAGS: dict[str, tuple[int, ...]] = {
    oids.ATTR_CONTENT_TYPE: (der.OBJECT_IDENTIFIER,),
    oids.ATTR_MESSAGE_DIGEST: (der.OCTET_STRING,),
    oids.ATTR_SIGNING_TIME: (0x17, 0x18),  # UTCTime, GeneralizedTime
    oids.ATTR_SMIME_CAPABILITIES: (der.SEQUENCE,),
    oids.ATTR_RECEIPT_REQUEST: (der.SEQUENCE,),
    oids.ATTR_SECURITY_LABEL: (der.SET,),
    oids.ATTR_MSG_SIG_DIGEST: (der.OCTET_STRING,),
    oids.ATTR_SIGNING_CERTIFICATE: (der.SEQUENCE,),
    oids.ATTR_SIGNING_CERTIFICATE_V2: (der.SEQUENCE,),
    oids.ATTR_SENDER_ASSURANCE: (der.SEQUENCE,),
}


def index_attributes(signed_attrs: bytes) -> dict[str, bytes]:
    """Map attribute OID to its single value's DER; refuse repeats and multi-valued ones.

    ``signed_attrs`` is the SignedAttributes SET as received, read shallowly (offsets, no
    asn1crypto): each attribute must be a SEQUENCE of an OID and a SET holding one value.
    """
    out: dict[str, bytes] = {}
    top = der.read(signed_attrs)
    if top.tag != der.SET or top.after != len(signed_attrs):
        raise SmimeError(Reason.MALFORMED, "signed attributes are not one SET")
    for attr in der.children(signed_attrs, top):
        parts = der.children(signed_attrs, attr) if attr.tag == der.SEQUENCE else []
        if len(parts) != 2 or parts[0].tag != der.OBJECT_IDENTIFIER or parts[1].tag != der.SET:
            raise SmimeError(Reason.MALFORMED, "a signed attribute is not a type and values")
        oid = der.dotted(signed_attrs, parts[0])
        values = der.children(signed_attrs, parts[1])
        if oid in out:
            raise SmimeError(Reason.MALFORMED, f"signed attribute {oid} appears twice")
        if len(values) != 1:
            raise SmimeError(Reason.MALFORMED, f"signed attribute {oid} has {len(values)} values")
        if oid in _VALUE_TAGS and values[0].tag not in _VALUE_TAGS[oid]:
            raise SmimeError(Reason.MALFORMED, f"signed attribute {oid}: tag {values[0].tag:#x}")
        out[oid] = der.value(signed_attrs, values[0])
    return out


def read_content_type(attrs: Mapping[str, bytes]) -> str:
    value, tlv = _value(attrs, oids.ATTR_CONTENT_TYPE, der.OBJECT_IDENTIFIER)
    try:
        return der.dotted(value, tlv)
    except ValueError as exc:
        raise SmimeError(Reason.MALFORMED, f"contentType: {exc}") from None


def read_message_digest(attrs: Mapping[str, bytes]) -> bytes:
    value, tlv = _value(attrs, oids.ATTR_MESSAGE_DIGEST, der.OCTET_STRING)
    return bytes(der.octets(value, tlv))


def _value(attrs: Mapping[str, bytes], oid: str, tag: int) -> tuple[bytes, der.Tlv]:
    """A present attribute's value: one primitive ``tag`` value, nothing after it."""
    if oid not in attrs:
        raise SmimeError(Reason.MALFORMED, f"signed attribute {oid} is missing")
    value = attrs[oid]
    tlv = der.read(value)
    if tlv.tag != tag or tlv.after != len(value):
        raise SmimeError(Reason.MALFORMED, f"signed attribute {oid} is not one value of its type")
    return value, tlv


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
    """RFC 5035: if signingCertificateV2 is present its first ESSCertIDv2 must name the signer.

    Read shallowly: SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, ... }
    and ESSCertIDv2 ::= SEQUENCE { hashAlgorithm DEFAULT sha256, certHash OCTET STRING, ... }.
    """
    value = attrs.get(oids.ATTR_SIGNING_CERTIFICATE_V2)
    if value is None:
        return
    hash_name, expected = _first_cert_id(value)
    if hashlib.new(hash_name, certificate_der).digest() != expected:
        raise SmimeError(
            Reason.SIGNATURE_INVALID, "signingCertificateV2 does not name the signer's certificate"
        )


def _first_cert_id(value: bytes) -> tuple[str, bytes]:
    """(hash name, certHash) of the first ESSCertIDv2 in a SigningCertificateV2."""
    top = der.read(value)
    certs = der.children(value, top) if top.tag == der.SEQUENCE else []
    if top.after != len(value) or not certs or certs[0].tag != der.SEQUENCE:
        raise SmimeError(Reason.MALFORMED, "signingCertificateV2 is not a SEQUENCE of certs")
    ids = der.children(value, certs[0])
    fields = der.children(value, ids[0]) if ids and ids[0].tag == der.SEQUENCE else []
    hash_oid = oids.SHA256  # the DEFAULT (RFC 5035 §5.4.1)
    if fields and fields[0].tag == der.SEQUENCE:
        algorithm = der.children(value, fields.pop(0))
        if not algorithm or algorithm[0].tag != der.OBJECT_IDENTIFIER:
            raise SmimeError(Reason.MALFORMED, "signingCertificateV2: hashAlgorithm")
        hash_oid = der.dotted(value, algorithm[0])
    if not fields or fields[0].tag != der.OCTET_STRING:
        raise SmimeError(Reason.MALFORMED, "signingCertificateV2: no certHash")
    return algorithms.digest_name(hash_oid), bytes(der.octets(value, fields[0]))


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
