"""Open CMS AuthEnvelopedData and EnvelopedData addressed to one of our keys.

Theory of operation. Find the RecipientInfo naming one of our certificates (by issuer and
serial or subject key identifier), recover the content-encryption key, then decrypt. No
plaintext leaves this module unless the cipher's own integrity check passed (GCM tag, or
for legacy CBC the padding; CBC integrity is then the inner signature's job). A key that
fails to unwrap is replaced by a random one (RFC 3218 §2.3.2), so a forged RSA block
fails exactly like a forged ciphertext and no padding oracle is offered.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers import algorithms as ciphers
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from securemail.smime import algorithms, asn1, der, oids
from securemail.smime.encrypt import CBC_BLOCK, ecdh_kek
from securemail.smime.errors import Reason, SmimeError
from securemail.smime.keys import RecipientIdentity
from securemail.smime.verify import content_info

MIN_GCM_TAG = 12


@dataclass(frozen=True)
class Encryption:
    """How a message was encrypted, and to which of our certificates."""

    content_encryption: str  # e.g. "aes256-gcm"
    key_management: str  # e.g. "rsa-oaep-sha256", "rsa-pkcs1v15", "ecdh-sha256kdf-aes256-wrap"
    recipient: x509.Certificate


def decrypt(data: bytes, identities: Sequence[RecipientIdentity]) -> tuple[bytes, Encryption]:
    """Decrypt a ContentInfo (AuthEnvelopedData or EnvelopedData) with one of ``identities``.

    A refusal is raised afresh here, outside the handler: the traceback it carries then keeps
    no frame below this one alive, so whatever records an error's local variables never sees
    the content key, nor the plaintext of a message that failed its integrity check.
    """
    try:
        return _decrypt(data, identities)
    except SmimeError as error:
        refusal = SmimeError(error.reason, error.detail)
    raise refusal


def _decrypt(data: bytes, identities: Sequence[RecipientIdentity]) -> tuple[bytes, Encryption]:
    try:
        content_type, envelope = content_info(data)
        auth = content_type == oids.ID_AUTH_ENVELOPED_DATA
        if not auth and content_type != oids.ID_ENVELOPED_DATA:
            raise SmimeError(Reason.NOT_ENCRYPTED, f"content type {content_type} is not encrypted")
        fields = envelope_fields(data, envelope, auth)
        inner_type, algorithm, encrypted = _encrypted_content_info(data, fields[der.SEQUENCE])
        cipher_name, key_size, aead = _cipher(algorithm[0])
        if aead != auth:
            raise SmimeError(Reason.MALFORMED, f"{cipher_name} in the wrong envelope type")
        if inner_type != oids.ID_DATA:
            raise SmimeError(Reason.MALFORMED, "encrypted content is not id-data")
        infos = der.children(data, fields[der.SET])
        cek, management, recipient = _content_key(data, infos, identities, key_size)
        ciphertext = b"" if encrypted is None else der.octets(data, encrypted)
        if aead:
            tag = bytes(der.octets(data, fields[der.OCTET_STRING]))
            auth_attrs = fields.get(0xA1)
            aad = b"" if auth_attrs is None else b"\x31" + der.value(data, auth_attrs)[1:]
            plaintext = _open_gcm(cek, algorithm[1], ciphertext, tag, aad)
        else:
            plaintext = _open_cbc(cek, algorithm[1], ciphertext)
    except (ValueError, TypeError, KeyError) as exc:
        raise SmimeError(Reason.MALFORMED, f"encrypted message: {exc}") from None
    return plaintext, Encryption(cipher_name, management, recipient)


def envelope_fields(data: bytes, envelope: der.Tlv, auth: bool) -> dict[int, der.Tlv]:
    """The (Auth)EnvelopedData fields by tag (RFC 5652 §6.1, RFC 5083 §2.1)."""
    expected = (
        (der.INTEGER, 0xA0, der.SET, der.SEQUENCE, 0xA1, der.OCTET_STRING, 0xA2)
        if auth
        else (der.INTEGER, 0xA0, der.SET, der.SEQUENCE, 0xA1)
    )
    fields: dict[int, der.Tlv] = {}
    order = iter(expected)
    for child in der.children(data, envelope):
        if child.tag not in order:  # consumes the iterator: tags must come in this order
            raise SmimeError(Reason.MALFORMED, f"unexpected field {child.tag:#x} in envelope")
        fields[child.tag] = child
    required = (der.SET, der.SEQUENCE, der.OCTET_STRING) if auth else (der.SET, der.SEQUENCE)
    if any(tag not in fields for tag in required):
        raise SmimeError(Reason.MALFORMED, "envelope is missing a required field")
    return fields


def _encrypted_content_info(
    data: bytes, info: der.Tlv
) -> tuple[str, tuple[str, bytes], der.Tlv | None]:
    """EncryptedContentInfo: (content type, algorithm, encryptedContent [0] if present)."""
    parts = der.children(data, info)
    if len(parts) not in (2, 3) or parts[0].tag != der.OBJECT_IDENTIFIER:
        raise SmimeError(Reason.MALFORMED, "EncryptedContentInfo")
    if len(parts) == 3 and parts[2].tag not in (0x80, 0xA0):
        raise SmimeError(Reason.MALFORMED, "encryptedContent is not [0]")
    content_type = der.dotted(data, parts[0])
    if parts[1].tag != der.SEQUENCE:
        raise SmimeError(Reason.MALFORMED, "contentEncryptionAlgorithm")
    algorithm = der.algorithm(data, parts[1])
    return content_type, algorithm, parts[2] if len(parts) == 3 else None


def _cipher(oid: str) -> tuple[str, int, bool]:
    if oid in algorithms.WEAK_CIPHERS:
        raise SmimeError(Reason.WEAK_ALGORITHM, f"cipher {algorithms.WEAK_CIPHERS[oid]}")
    try:
        return algorithms.CIPHERS[oid]
    except KeyError:
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"content cipher {oid}") from None


def _content_key(
    data: bytes, infos: list[der.Tlv], identities: Sequence[RecipientIdentity], key_size: int
) -> tuple[bytes, str, x509.Certificate]:
    for tlv in infos:
        # KeyTransRecipientInfo (an untagged SEQUENCE) is read shallowly; the others are
        # CHOICE alternatives with their own tags, for asn1crypto.
        ktri = key_transport(data, tlv) if tlv.tag == der.SEQUENCE else None
        info = None if ktri else cms.RecipientInfo.load(der.value(data, tlv), strict=True)
        for identity in identities:
            if ktri is not None and _ktri_matches(ktri, identity):
                cek, management = _unwrap_ktri(ktri, identity)
            elif (
                info is not None
                and info.name == "kari"
                and (encrypted := _kari_key(info.chosen, identity))
            ):
                cek, management = _unwrap_kari(info.chosen, encrypted, identity)
            else:
                continue
            if cek is None or len(cek) != key_size:
                cek = os.urandom(key_size)  # fail later, like any forgery would
            return cek, management, identity.certificate
    raise SmimeError(Reason.NOT_FOR_US, "no recipient info for any of our certificates")


class KeyTrans(NamedTuple):
    """The fields of a KeyTransRecipientInfo (RFC 5652 §6.2.1)."""

    rid: tuple[int, bytes]  # SEQUENCE: IssuerAndSerialNumber DER; 0x80: subjectKeyIdentifier
    algorithm: str  # keyEncryptionAlgorithm, dotted
    parameters: bytes  # its parameters' DER, b"" when absent
    encrypted_key: bytes


def key_transport(data: bytes, info: der.Tlv) -> KeyTrans:
    parts = der.children(data, info)
    tags = [p.tag for p in parts]
    if len(tags) != 4 or tags[0] != der.INTEGER or tags[1] not in (der.SEQUENCE, 0x80):
        raise SmimeError(Reason.MALFORMED, "KeyTransRecipientInfo fields")
    if tags[2] != der.SEQUENCE or tags[3] not in (der.OCTET_STRING, 0x24):
        raise SmimeError(Reason.MALFORMED, "KeyTransRecipientInfo fields")
    _, rid, algorithm, key = parts
    identifier = der.children(data, algorithm)
    if not 1 <= len(identifier) <= 2:
        raise SmimeError(Reason.MALFORMED, "KeyTransRecipientInfo keyEncryptionAlgorithm")
    rid_value = der.value(data, rid) if rid.tag == der.SEQUENCE else bytes(der.octets(data, rid))
    return KeyTrans(
        rid=(rid.tag, rid_value),
        algorithm=der.dotted(data, identifier[0]),
        parameters=der.value(data, identifier[1]) if len(identifier) == 2 else b"",
        encrypted_key=bytes(der.octets(data, key)),
    )


def _ktri_matches(ktri: KeyTrans, identity: RecipientIdentity) -> bool:
    kind, value = ktri.rid
    if kind == der.SEQUENCE:
        return value == identity.issuer_and_serial
    return value == identity.subject_key_identifier


def _unwrap_ktri(ktri: KeyTrans, identity: RecipientIdentity) -> tuple[bytes | None, str]:
    key = identity.private_key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SmimeError(Reason.MALFORMED, "key transport to a non-RSA certificate")
    oid = ktri.algorithm
    if oid == oids.RSA_ENCRYPTION:
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
        management = "rsa-pkcs1v15"
    elif oid == oids.RSAES_OAEP:
        pad, hash_name = _oaep(ktri.parameters)
        management = f"rsa-oaep-{hash_name}"
    else:
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"key transport {oid}")
    try:
        return key.decrypt(ktri.encrypted_key, pad), management
    except ValueError:
        return None, management


def _oaep(params: bytes) -> tuple[padding.OAEP, str]:
    hash_alg = algorithms.hash_algorithm(_oaep_hash(params))
    return padding.OAEP(padding.MGF1(hash_alg), hash_alg, None), hash_alg.name


@lru_cache(maxsize=64)
def _oaep_hash(encoded: bytes) -> str:
    """The hash of RSAES-OAEP-params (RFC 8017 A.2.1); cached: peers send the same few."""
    params = algos.RSAESOAEPParams.load(encoded)
    hash_oid = params["hash_algorithm"]["algorithm"].dotted
    mgf = params["mask_gen_algorithm"]
    mgf_oid = mgf["parameters"]["algorithm"].dotted
    if (
        hash_oid not in algorithms.OAEP_HASHES
        or mgf_oid != hash_oid
        or mgf["algorithm"].dotted != oids.MGF1
        or params["p_source_algorithm"]["parameters"].native != b""
    ):
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"RSA-OAEP with {hash_oid}/{mgf_oid}")
    return algorithms.OAEP_HASHES[hash_oid]


def _kari_key(kari: cms.KeyAgreeRecipientInfo, identity: RecipientIdentity) -> bytes | None:
    """The encrypted key in ``kari`` meant for ``identity``, if there is one."""
    for rek in kari["recipient_encrypted_keys"]:
        rid = rek["rid"]
        if rid.name == "issuer_and_serial_number":
            if rid.chosen.dump() == identity.issuer_and_serial:
                return bytes(rek["encrypted_key"].native)
        elif rid.chosen["subject_key_identifier"].native == identity.subject_key_identifier:
            return bytes(rek["encrypted_key"].native)
    return None


def _unwrap_kari(
    kari: cms.KeyAgreeRecipientInfo, encrypted_key: bytes, identity: RecipientIdentity
) -> tuple[bytes | None, str]:
    private = identity.private_key
    originator = kari["originator"]
    if not isinstance(private, ec.EllipticCurvePrivateKey) or originator.name != "originator_key":
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, "key agreement other than ephemeral ECDH")
    scheme = kari["key_encryption_algorithm"]["algorithm"].dotted
    if scheme not in algorithms.ECDH_KDFS:
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"ECDH scheme {scheme}")
    kdf_hash = algorithms.ECDH_KDFS[scheme]
    wrap = cms.KeyEncryptionAlgorithm.load(kari["key_encryption_algorithm"]["parameters"].dump())
    wrap_oid = wrap["algorithm"].dotted
    if wrap_oid not in algorithms.KEY_WRAPS:
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"key wrap {wrap_oid}")
    point = bytes(originator.chosen["public_key"].native)
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, point)
    except ValueError:
        raise SmimeError(Reason.DECRYPT_FAILED, "originator key is not on our curve") from None
    ukm = kari["ukm"].native
    kek = ecdh_kek(private, public, kdf_hash, wrap_oid, None if ukm is None else bytes(ukm))
    wrap_bits = algorithms.KEY_WRAPS[wrap_oid] * 8
    management = f"ecdh-{kdf_hash}kdf-aes{wrap_bits}-wrap"
    try:
        return aes_key_unwrap(kek, encrypted_key), management
    except InvalidUnwrap:
        return None, management


def _open_gcm(
    cek: bytes, params: bytes, ciphertext: bytes | memoryview, tag: bytes, aad: bytes
) -> bytes:
    gcm = asn1.GCMParameters.load(params, strict=True)
    nonce = bytes(gcm["aes_nonce"].native)
    if len(tag) != gcm["aes_icv_len"].native or len(tag) < MIN_GCM_TAG or len(tag) > 16:
        raise SmimeError(Reason.MALFORMED, f"GCM tag of {len(tag)} bytes")
    decryptor = Cipher(ciphers.AES(cek), modes.GCM(nonce, tag, min_tag_length=len(tag))).decryptor()
    decryptor.authenticate_additional_data(aad)
    plaintext = decryptor.update(ciphertext)
    try:
        decryptor.finalize()
    except InvalidTag:
        del plaintext
        raise SmimeError(
            Reason.INTEGRITY_FAILED, "authentication tag does not match: altered or wrong key"
        ) from None
    return plaintext


def _open_cbc(cek: bytes, params: bytes, ciphertext: bytes | memoryview) -> bytes:
    iv = bytes(core.OctetString.load(params, strict=True).native)
    if len(iv) != CBC_BLOCK or not ciphertext or len(ciphertext) % CBC_BLOCK:
        raise SmimeError(Reason.MALFORMED, "CBC IV or ciphertext length")
    decryptor = Cipher(ciphers.AES(cek), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= CBC_BLOCK or padded[-pad:] != bytes((pad,)) * pad:
        raise SmimeError(Reason.DECRYPT_FAILED, "CBC padding invalid: altered or wrong key")
    return padded[:-pad]
