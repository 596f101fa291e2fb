"""Make CMS AuthEnvelopedData (AES-GCM, RFC 5083/5084) or legacy EnvelopedData (AES-CBC).

Key management per recipient certificate: RSA-OAEP-SHA256 for AuthEnvelopedData, RSA
PKCS#1 v1.5 for legacy EnvelopedData (what peers without OAEP read), and ECDH
(dhSinglePass-stdDH-sha256kdf with AES key wrap, RFC 5753) for EC certificates.
The content is streamed through the cipher part by part: it is never joined in clear.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from asn1crypto import algos
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers import algorithms as ciphers
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from securemail.smime import algorithms, der, keys, oids
from securemail.smime.algorithms import CipherName
from securemail.smime.errors import Reason, SmimeError

GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
CBC_BLOCK = 16

_OAEP_SHA256_PARAMS = bytes(
    algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        }
    ).dump()
)


def _ktri(cert: x509.Certificate, cek: bytes, oaep: bool) -> bytes:
    key = keys.public_key(cert)
    assert isinstance(key, rsa.RSAPublicKey)  # noqa: S101 - checked by the caller
    if oaep:
        sha256 = algorithms.hash_algorithm("sha256")
        encrypted = key.encrypt(cek, padding.OAEP(padding.MGF1(sha256), sha256, None))
        algorithm = algorithms.algorithm_identifier(oids.RSAES_OAEP, _OAEP_SHA256_PARAMS)
    else:
        encrypted = key.encrypt(cek, padding.PKCS1v15())
        algorithm = algorithms.algorithm_identifier(oids.RSA_ENCRYPTION, algorithms.NULL)
    return der.encode(
        der.SEQUENCE,
        der.integer(0),
        keys.issuer_and_serial(cert),
        algorithm,
        der.octet_string(encrypted).join(),
    )


def ecc_cms_shared_info(wrap_oid: str, key_bytes: int, ukm: bytes | None) -> bytes:
    """RFC 5753 §7.2 ECC-CMS-SharedInfo: the X9.63 KDF's SharedInfo."""
    ukm_part = () if ukm is None else (der.encode(0xA0, der.octet_string(ukm).join()),)
    supp_pub = der.encode(0xA2, der.octet_string((key_bytes * 8).to_bytes(4, "big")).join())
    return der.encode(der.SEQUENCE, algorithms.algorithm_identifier(wrap_oid), *ukm_part, supp_pub)


def ecdh_kek(
    private: ec.EllipticCurvePrivateKey,
    public: ec.EllipticCurvePublicKey,
    kdf_hash: str,
    wrap_oid: str,
    ukm: bytes | None,
) -> bytes:
    """Derive the key-encryption key of RFC 5753 §3.1.1 from one ECDH exchange."""
    length = algorithms.KEY_WRAPS[wrap_oid]
    shared = private.exchange(ec.ECDH(), public)
    kdf = X963KDF(
        algorithm=algorithms.hash_algorithm(kdf_hash),
        length=length,
        sharedinfo=ecc_cms_shared_info(wrap_oid, length, ukm),
    )
    return kdf.derive(shared)


def _kari(cert: x509.Certificate, cek: bytes) -> bytes:
    public = keys.public_key(cert)
    assert isinstance(public, ec.EllipticCurvePublicKey)  # noqa: S101 - checked by the caller
    ephemeral = ec.generate_private_key(public.curve)
    kek = ecdh_kek(ephemeral, public, "sha256", oids.AES256_WRAP, None)
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    originator_key = der.encode(
        0xA1, algorithms.algorithm_identifier(oids.EC_PUBLIC_KEY), der.encode(0x03, b"\x00" + point)
    )
    key_encryption = algorithms.algorithm_identifier(
        oids.ECDH_STD_SHA256KDF, algorithms.algorithm_identifier(oids.AES256_WRAP)
    )
    encrypted_key = der.encode(
        der.SEQUENCE, keys.issuer_and_serial(cert), der.octet_string(aes_key_wrap(kek, cek)).join()
    )
    return der.encode(
        0xA1,
        der.integer(3),
        der.encode(0xA0, originator_key),
        key_encryption,
        der.encode(der.SEQUENCE, encrypted_key),
    )


def recipient_info(cert: x509.Certificate, cek: bytes, oaep: bool) -> bytes:
    """One RecipientInfo for ``cert``: KeyTransRecipientInfo (RSA) or KeyAgreeRecipientInfo (EC)."""
    keys.check_public_key(cert)
    if isinstance(keys.public_key(cert), rsa.RSAPublicKey):
        return _ktri(cert, cek, oaep)
    return _kari(cert, cek)


def _parts(content: bytes | der.Chunks) -> Sequence[bytes]:
    return content.parts if isinstance(content, der.Chunks) else (content,)


def encrypt(
    content: bytes | der.Chunks,
    recipients: Sequence[x509.Certificate],
    *,
    cipher: CipherName = "aes256-gcm",
) -> der.Chunks:
    """Return a ContentInfo that only ``recipients`` can open, holding ``content`` (id-data)."""
    if not recipients:
        raise SmimeError(Reason.NOT_FOR_US, "no recipient certificate to encrypt to")
    oid = algorithms.CIPHER_OIDS[cipher]
    _, key_size, aead = algorithms.CIPHERS[oid]
    cek = os.urandom(key_size)
    infos = der.der_set(recipient_info(cert, cek, oaep=aead) for cert in recipients)
    if aead:
        return _auth_enveloped(content, cek, oid, infos)
    return _enveloped(
        content,
        cek,
        oid,
        infos,
        any_kari=any(isinstance(keys.public_key(c), ec.EllipticCurvePublicKey) for c in recipients),
    )


def _auth_enveloped(content: bytes | der.Chunks, cek: bytes, oid: str, infos: bytes) -> der.Chunks:
    nonce = os.urandom(GCM_NONCE_BYTES)
    encryptor = Cipher(ciphers.AES(cek), modes.GCM(nonce)).encryptor()
    encrypted = [encryptor.update(p) for p in _parts(content)]
    encrypted.append(encryptor.finalize())
    params = der.encode(der.SEQUENCE, der.octet_string(nonce).join(), der.integer(GCM_TAG_BYTES))
    content_info = der.tlv(
        der.SEQUENCE,
        der.oid(oids.ID_DATA),
        algorithms.algorithm_identifier(oid, params),
        der.tlv(0x80, der.Chunks(encrypted)),
    )
    body = der.tlv(
        der.SEQUENCE, der.integer(0), infos, content_info, der.octet_string(encryptor.tag)
    )
    return der.tlv(der.SEQUENCE, der.oid(oids.ID_AUTH_ENVELOPED_DATA), der.tlv(0xA0, body))


def _enveloped(
    content: bytes | der.Chunks, cek: bytes, oid: str, infos: bytes, any_kari: bool
) -> der.Chunks:
    iv = os.urandom(CBC_BLOCK)
    encryptor = Cipher(ciphers.AES(cek), modes.CBC(iv)).encryptor()
    parts = _parts(content)
    pad = CBC_BLOCK - sum(len(p) for p in parts) % CBC_BLOCK
    encrypted = [encryptor.update(p) for p in parts]
    encrypted.append(encryptor.update(bytes((pad,)) * pad) + encryptor.finalize())
    content_info = der.tlv(
        der.SEQUENCE,
        der.oid(oids.ID_DATA),
        algorithms.algorithm_identifier(oid, der.octet_string(iv).join()),
        der.tlv(0x80, der.Chunks(encrypted)),
    )
    # RFC 5652 §6.1: version 2 when any RecipientInfo is not version 0 (KARI is version 3)
    body = der.tlv(der.SEQUENCE, der.integer(2 if any_kari else 0), infos, content_info)
    return der.tlv(der.SEQUENCE, der.oid(oids.ID_ENVELOPED_DATA), der.tlv(0xA0, body))
