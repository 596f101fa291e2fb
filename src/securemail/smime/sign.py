"""Make CMS SignedData (RFC 5652 §5, S/MIME 4.0 RFC 8551) for one signer.

The content is hashed once; the signed attributes are built as DER directly; the content
is framed, not copied (see :mod:`securemail.smime.der`). RSA PKCS#1 v1.5 is the default
signature (widest interoperability); RSA-PSS and ECDSA are available.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from securemail.smime import algorithms, attributes, der, oids
from securemail.smime.algorithms import DigestName, RsaPadding
from securemail.smime.assurance import SenderAssurance
from securemail.smime.keys import SignerIdentity
from securemail.smime.labels import SecurityLabel


def digest_content(content: bytes | der.Chunks, digest: DigestName) -> bytes:
    h = hashlib.new(digest)
    for part in content.parts if isinstance(content, der.Chunks) else (content,):
        h.update(part)
    return h.digest()


def _pss_parameters(digest: DigestName) -> bytes:
    params = algos.RSASSAPSSParams(
        {
            "hash_algorithm": {"algorithm": digest},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest}},
            "salt_length": hashlib.new(digest).digest_size,
        }
    )
    return bytes(params.dump())


def _sign_bytes(
    signer: SignerIdentity, data: bytes, digest: DigestName, rsa_padding: RsaPadding
) -> tuple[bytes, bytes]:
    """Sign ``data``; return (signatureAlgorithm DER, signature value)."""
    hash_alg = algorithms.hash_algorithm(digest)
    key = signer.private_key
    if isinstance(key, rsa.RSAPrivateKey):
        if rsa_padding == "pss":
            pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
            return (
                algorithms.algorithm_identifier(oids.RSASSA_PSS, _pss_parameters(digest)),
                key.sign(data, pss, hash_alg),
            )
        return (
            algorithms.algorithm_identifier(oids.RSA_ENCRYPTION, algorithms.NULL),
            key.sign(data, padding.PKCS1v15(), hash_alg),
        )
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # noqa: S101 - SignerIdentity's type
    prehashed = hashes.Hash(hash_alg)
    prehashed.update(data)
    value = key.sign(prehashed.finalize(), ec.ECDSA(utils.Prehashed(hash_alg)))
    return algorithms.algorithm_identifier(algorithms.ECDSA_BY_DIGEST[digest]), value


def signer_info(
    signer: SignerIdentity,
    signed_attrs: bytes,
    digest: DigestName,
    rsa_padding: RsaPadding,
) -> tuple[bytes, bytes]:
    """DER SignerInfo (version 1, issuerAndSerialNumber) and the signature value in it."""
    signature_algorithm, signature = _sign_bytes(signer, signed_attrs, digest, rsa_padding)
    info = der.encode(
        der.SEQUENCE,
        der.integer(1),
        signer.issuer_and_serial,
        algorithms.algorithm_identifier(algorithms.DIGEST_OIDS[digest]),
        b"\xa0" + signed_attrs[1:],  # [0] IMPLICIT SET: same length, retagged
        signature_algorithm,
        der.octet_string(signature).join(),
    )
    return info, signature


@dataclass(frozen=True)
class SignedData:
    """A SignedData ContentInfo (as chunks) and what a receipt for it will be bound to."""

    der: der.Chunks
    signed_attributes: bytes
    signature_value: bytes
    digest: DigestName


def sign(
    content: bytes | der.Chunks,
    signer: SignerIdentity,
    *,
    now: datetime,
    digest: DigestName = "sha256",
    rsa_padding: RsaPadding = "pkcs1v15",
    label: SecurityLabel | None = None,
    receipt_request: attributes.ReceiptRequest | None = None,
    detached: bool = False,
    content_type: str = oids.ID_DATA,
    msg_sig_digest: bytes | None = None,
    sealed_for: attributes.SealedFor | None = None,
    sender_assurance: SenderAssurance | None = None,
) -> SignedData:
    """Return a ContentInfo holding SignedData over ``content`` by ``signer``."""
    signed_attrs = attributes.build_signed_attributes(
        content_type=content_type,
        digest=digest_content(content, digest),
        signer=signer,
        now=now,
        label=label,
        receipt_request=receipt_request,
        msg_sig_digest=msg_sig_digest,
        sealed_for=sealed_for,
        sender_assurance=sender_assurance,
    )
    info, signature = signer_info(signer, signed_attrs, digest, rsa_padding)
    encap = (
        der.tlv(der.SEQUENCE, der.oid(content_type))
        if detached
        else der.tlv(der.SEQUENCE, der.oid(content_type), der.tlv(0xA0, der.octet_string(content)))
    )
    signed_data = der.tlv(
        der.SEQUENCE,
        # RFC 5652 §5.1: version 3 when the content is not id-data, else 1
        der.integer(1 if content_type == oids.ID_DATA else 3),
        der.encode(der.SET, algorithms.algorithm_identifier(algorithms.DIGEST_OIDS[digest])),
        encap,
        der.encode(0xA0, *sorted(signer.certificates_der)),  # DER SET OF order
        der.encode(der.SET, info),
    )
    content_info = der.tlv(der.SEQUENCE, der.oid(oids.ID_SIGNED_DATA), der.tlv(0xA0, signed_data))
    return SignedData(content_info, signed_attrs, signature, digest)
