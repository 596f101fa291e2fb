"""Check CMS SignedData: one signer, its signature, its attributes, what it covers.

Theory of operation. ``verify_signed_data`` parses the ContentInfo, insists on exactly one
SignerInfo with signed attributes, recomputes the content digest and compares it with the
messageDigest attribute, checks contentType against the encapsulated type, then verifies
the signature over the signed-attribute bytes *as received* (retagged to SET, RFC 5652
§5.4). It returns the covered content with a :class:`Signature` describing who signed and
what they signed into it. It does not decide whether the signer is trusted: that is
:mod:`securemail.smime.trust`, which gets the certificate this module identified.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from asn1crypto import algos
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from securemail.smime import algorithms, attributes, der, keys, oids
from securemail.smime.algorithms import DigestName
from securemail.smime.assurance import SenderAssurance, read_sender_assurance
from securemail.smime.errors import Reason, SmimeError
from securemail.smime.labels import SecurityLabel
from securemail.smime.sign import digest_content

MAX_CERTIFICATES = 16


@dataclass(frozen=True)
class Signature:
    """What a verified signature proves, and what a receipt for it must be bound to."""

    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]  # as sent; untrusted until path-validated
    digest_algorithm: DigestName
    signature_algorithm: str
    content_type: str
    signing_time: datetime | None
    label: SecurityLabel | None
    receipt_request: attributes.ReceiptRequest | None
    msg_sig_digest: bytes | None
    signed_attributes: bytes  # DER SET, as received: msgSigDigest is computed over it
    signature_value: bytes
    sealed_for: attributes.SealedFor | None = None  # whom the signer sealed it for
    sender_assurance: SenderAssurance | None = None  # what the signer vouches of the sender


def content_info(data: bytes) -> tuple[str, der.Tlv]:
    """Read a ContentInfo shallowly: (content type, the value inside its [0] EXPLICIT)."""
    top = der.read(data)
    parts = der.children(data, top) if top.tag == der.SEQUENCE else []
    if len(parts) != 2 or parts[0].tag != der.OBJECT_IDENTIFIER or parts[1].tag != 0xA0:
        raise SmimeError(Reason.MALFORMED, "not a CMS ContentInfo")
    inner = der.children(data, parts[1])
    if len(inner) != 1:
        raise SmimeError(Reason.MALFORMED, "ContentInfo content is not one value")
    try:
        content_type = der.dotted(data, parts[0])
    except ValueError as exc:
        raise SmimeError(Reason.MALFORMED, f"ContentInfo content type: {exc}") from None
    return content_type, inner[0]


def content_type_of(data: bytes) -> str:
    """The content type of a ContentInfo, without touching its content."""
    return content_info(data)[0]


def verify_signed_data(
    data: bytes, detached_content: bytes | None = None
) -> tuple[bytes, Signature]:
    """Verify a SignedData ContentInfo; return (covered content, signature facts)."""
    try:
        content_type, signed_data = content_info(data)
        if content_type != oids.ID_SIGNED_DATA:
            raise SmimeError(Reason.NOT_SIGNED, f"content type {content_type} is not SignedData")
        fields = der.children(data, signed_data)
        if len(fields) < 4 or fields[-1].tag != der.SET or fields[2].tag != der.SEQUENCE:
            raise SmimeError(Reason.MALFORMED, "SignedData fields")
        encap_type, embedded = _encapsulated(data, fields[2])
        if embedded is not None and detached_content is not None:
            raise SmimeError(Reason.MALFORMED, "content both embedded and detached")
        content = detached_content if embedded is None else embedded
        certificates = _certificates(data, [f for f in fields[3:-1] if f.tag == 0xA0])
        signer_infos = der.children(data, fields[-1])
        if len(signer_infos) != 1:
            raise SmimeError(Reason.SIGNER_COUNT, f"{len(signer_infos)} signers, expected one")
        info = _signer_info(data, signer_infos[0])
        return _verify_signer(info, content, encap_type, certificates)
    except (ValueError, TypeError, KeyError) as exc:
        raise SmimeError(Reason.MALFORMED, f"SignedData: {exc}") from None


def _encapsulated(data: bytes, encap: der.Tlv) -> tuple[str, bytes | None]:
    """EncapsulatedContentInfo: (eContentType, the eContent octets or None if detached)."""
    parts = der.children(data, encap)
    if not 1 <= len(parts) <= 2 or parts[0].tag != der.OBJECT_IDENTIFIER:
        raise SmimeError(Reason.MALFORMED, "EncapsulatedContentInfo")
    content_type = der.dotted(data, parts[0])
    if len(parts) == 1:
        return content_type, None
    wrapped = der.children(data, parts[1]) if parts[1].tag == 0xA0 else []
    if len(wrapped) != 1 or wrapped[0].tag not in (der.OCTET_STRING, 0x24):
        raise SmimeError(Reason.MALFORMED, "eContent is not an OCTET STRING")
    return content_type, bytes(der.octets(data, wrapped[0]))


def _certificates(data: bytes, sets: list[der.Tlv]) -> tuple[x509.Certificate, ...]:
    """The certificates of SignedData.certificates; other certificate choices are skipped."""
    if not sets:
        return ()
    found = [c for c in der.children(data, sets[0]) if c.tag == der.SEQUENCE]
    if len(found) > MAX_CERTIFICATES:
        raise SmimeError(Reason.TOO_LARGE, f"{len(found)} certificates in SignedData")
    try:
        return tuple(_load_certificate(der.value(data, c)) for c in found)
    except x509.InvalidVersion as exc:  # not a ValueError
        raise SmimeError(Reason.MALFORMED, f"certificate in SignedData: {exc}") from None


@lru_cache(maxsize=256)
def _load_certificate(encoded: bytes) -> x509.Certificate:
    """Parse a DER certificate; cached, because peers send the same few with every message
    (the object is immutable, and the keys and paths cached for it are then found again)."""
    return x509.load_der_x509_certificate(encoded)


class SignerInfo(NamedTuple):
    """The fields of a SignerInfo (RFC 5652 §5.3) that verification uses."""

    sid: tuple[int, bytes]  # SEQUENCE: IssuerAndSerialNumber DER; 0x80: subjectKeyIdentifier
    digest_algorithm: str  # dotted OID
    signed_attrs: bytes | None  # the SignedAttributes as received, retagged to SET
    signature_algorithm: tuple[str, bytes]  # dotted OID, parameters' DER (b"": absent)
    signature: bytes


# SignerInfo fields in order; "?" marks the optional ones (RFC 5652 §5.3).
_SIGNER_INFO: tuple[tuple[int | str, ...], ...] = (
    (der.INTEGER,),  # version
    (der.SEQUENCE, 0x80),  # sid: issuerAndSerialNumber or [0] subjectKeyIdentifier
    (der.SEQUENCE,),  # digestAlgorithm
    (0xA0, "?"),  # signedAttrs
    (der.SEQUENCE,),  # signatureAlgorithm
    (der.OCTET_STRING, 0x24),  # signature (0x24: BER constructed)
    (0xA1, "?"),  # unsignedAttrs
)


def _signer_info(data: bytes, info: der.Tlv) -> SignerInfo:
    """Read a SignerInfo shallowly (offsets into ``data``, no asn1crypto)."""
    parts = der.children(data, info) if info.tag == der.SEQUENCE else []
    found: list[der.Tlv | None] = []
    for expected in _SIGNER_INFO:
        if parts and parts[0].tag in expected:
            found.append(parts.pop(0))
        elif "?" in expected:
            found.append(None)
        else:
            raise SmimeError(Reason.MALFORMED, "SignerInfo fields")
    if parts:
        raise SmimeError(Reason.MALFORMED, "SignerInfo fields")
    _, sid, digest, attrs, algorithm, signature, _ = found
    assert sid and digest and algorithm and signature  # noqa: S101 - required above
    sid_value = der.value(data, sid) if sid.tag == der.SEQUENCE else bytes(der.octets(data, sid))
    return SignerInfo(
        sid=(sid.tag, sid_value),
        digest_algorithm=der.algorithm(data, digest)[0],
        signed_attrs=None if attrs is None else b"\x31" + der.value(data, attrs)[1:],
        signature_algorithm=der.algorithm(data, algorithm),
        signature=bytes(der.octets(data, signature)),
    )


def _find_signer(
    sid: tuple[int, bytes], certificates: tuple[x509.Certificate, ...]
) -> x509.Certificate:
    kind, value = sid
    for cert in certificates:
        if kind == der.SEQUENCE:
            if value == keys.issuer_and_serial(cert):
                return cert
        elif keys.subject_key_identifier(cert) == value:
            return cert
    raise SmimeError(Reason.UNTRUSTED_SIGNER, "the signer's certificate is not in the message")


def _verify_signer(
    info: SignerInfo,
    content: bytes | None,
    content_type: str,
    certificates: tuple[x509.Certificate, ...],
) -> tuple[bytes, Signature]:
    if content is None:
        raise SmimeError(Reason.MALFORMED, "detached signature without its content")
    digest = algorithms.digest_name(info.digest_algorithm)
    signed_attrs = info.signed_attrs
    if signed_attrs is None:
        raise SmimeError(Reason.MALFORMED, "signature without signed attributes")
    attrs = attributes.index_attributes(signed_attrs)
    if attributes.read_content_type(attrs) != content_type:
        raise SmimeError(Reason.SIGNATURE_INVALID, "contentType attribute does not match content")
    if not hmac.compare_digest(
        attributes.read_message_digest(attrs), digest_content(content, digest)
    ):
        raise SmimeError(Reason.SIGNATURE_INVALID, "content does not match its messageDigest")
    signer = _find_signer(info.sid, certificates)
    keys.check_public_key(signer)
    signature_value = info.signature
    algorithm = _check_signature(
        signer, info.signature_algorithm, digest, signed_attrs, signature_value
    )
    attributes.check_signing_certificate(attrs, signer.public_bytes(_DER))
    return content, Signature(
        signer=signer,
        certificates=certificates,
        digest_algorithm=digest,
        signature_algorithm=algorithm,
        content_type=content_type,
        signing_time=attributes.read_signing_time(attrs),
        label=attributes.read_label(attrs),
        receipt_request=attributes.read_receipt_request(attrs),
        msg_sig_digest=attributes.read_msg_sig_digest(attrs),
        signed_attributes=signed_attrs,
        signature_value=signature_value,
        sealed_for=attributes.read_sealed_for(attrs),
        sender_assurance=read_sender_assurance(attrs),
    )


def _check_signature(
    signer: x509.Certificate,
    algorithm: tuple[str, bytes],
    digest: DigestName,
    data: bytes,
    value: bytes,
) -> str:
    """Verify ``value`` over ``data``; return the signature algorithm's profile name."""
    oid, parameters = algorithm
    hash_alg = algorithms.hash_algorithm(digest)
    key = keys.public_key(signer)
    if oid in algorithms.WEAK_SIGNATURES:
        raise SmimeError(Reason.WEAK_ALGORITHM, f"signature {algorithms.WEAK_SIGNATURES[oid]}")
    try:
        if oid in algorithms.RSA_SIGNATURES and isinstance(key, rsa.RSAPublicKey):
            _same_digest(algorithms.RSA_SIGNATURES[oid], digest)
            key.verify(value, data, padding.PKCS1v15(), hash_alg)
            return f"rsa-pkcs1v15-{digest}"
        if oid == oids.RSASSA_PSS and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, data, _pss_padding(parameters, digest), hash_alg)
            return f"rsa-pss-{digest}"
        if oid in algorithms.ECDSA_SIGNATURES and isinstance(key, ec.EllipticCurvePublicKey):
            _same_digest(algorithms.ECDSA_SIGNATURES[oid], digest)
            prehashed = digest_content(data, digest)
            key.verify(value, prehashed, ec.ECDSA(utils.Prehashed(hash_alg)))
            return f"ecdsa-{digest}"
    except InvalidSignature:
        raise SmimeError(Reason.SIGNATURE_INVALID, "signature does not verify") from None
    raise SmimeError(
        Reason.UNSUPPORTED_ALGORITHM, f"signature algorithm {oid} with a {type(key).__name__}"
    )


def _same_digest(named: DigestName | None, digest: DigestName) -> None:
    if named is not None and named != digest:
        raise SmimeError(Reason.MALFORMED, f"signature names {named}, digest is {digest}")


def _pss_padding(parameters: bytes, digest: DigestName) -> padding.PSS:
    params = algos.RSASSAPSSParams.load(parameters, strict=True)
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    mgf_hash = mgf["parameters"]["algorithm"].native
    if hash_name != digest or mgf["algorithm"].native != "mgf1" or mgf_hash != digest:
        raise SmimeError(
            Reason.UNSUPPORTED_ALGORITHM,
            f"RSA-PSS with hash {hash_name}, MGF1 {mgf_hash}, digest {digest}",
        )
    return padding.PSS(
        mgf=padding.MGF1(algorithms.hash_algorithm(digest)),
        salt_length=int(params["salt_length"].native),
    )


_DER = serialization.Encoding.DER
