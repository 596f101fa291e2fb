"""Which algorithms the profile allows, and their identifiers in both directions.

Policy lives here as data: a digest, signature or cipher that is not in these tables is
refused with ``unsupported-algorithm``; the ones named in ``WEAK_*`` with ``weak-algorithm``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from cryptography.hazmat.primitives import hashes

from securemail.smime import der, oids
from securemail.smime.errors import Reason, SmimeError

DigestName = Literal["sha256", "sha384", "sha512"]
CipherName = Literal["aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc"]
RsaPadding = Literal["pkcs1v15", "pss"]

DIGESTS: dict[str, DigestName] = {
    oids.SHA256: "sha256",
    oids.SHA384: "sha384",
    oids.SHA512: "sha512",
}
DIGEST_OIDS: dict[DigestName, str] = {name: oid for oid, name in DIGESTS.items()}
WEAK_DIGESTS = {oids.MD5: "md5", oids.SHA1: "sha1"}

# Signature algorithm identifiers seen in SignerInfo.signatureAlgorithm. RFC 5754 lets the
# signer use either the bare key algorithm or the combined one; the digest must then agree.
RSA_SIGNATURES: dict[str, DigestName | None] = {
    oids.RSA_ENCRYPTION: None,
    oids.SHA256_WITH_RSA: "sha256",
    oids.SHA384_WITH_RSA: "sha384",
    oids.SHA512_WITH_RSA: "sha512",
}
ECDSA_SIGNATURES: dict[str, DigestName | None] = {
    oids.EC_PUBLIC_KEY: None,
    oids.ECDSA_SHA256: "sha256",
    oids.ECDSA_SHA384: "sha384",
    oids.ECDSA_SHA512: "sha512",
}
ECDSA_BY_DIGEST: dict[DigestName, str] = {
    "sha256": oids.ECDSA_SHA256,
    "sha384": oids.ECDSA_SHA384,
    "sha512": oids.ECDSA_SHA512,
}
WEAK_SIGNATURES = {
    oids.MD5_WITH_RSA: "md5WithRSA",
    oids.SHA1_WITH_RSA: "sha1WithRSA",
    oids.ECDSA_SHA1: "ecdsa-with-SHA1",
}

# content encryption: OID -> (cipher name, key length in bytes, AEAD?)
CIPHERS: dict[str, tuple[CipherName | str, int, bool]] = {
    oids.AES256_GCM: ("aes256-gcm", 32, True),
    oids.AES192_GCM: ("aes192-gcm", 24, True),
    oids.AES128_GCM: ("aes128-gcm", 16, True),
    oids.AES256_CBC: ("aes256-cbc", 32, False),
    oids.AES192_CBC: ("aes192-cbc", 24, False),
    oids.AES128_CBC: ("aes128-cbc", 16, False),
}
CIPHER_OIDS: dict[CipherName, str] = {
    "aes256-gcm": oids.AES256_GCM,
    "aes128-gcm": oids.AES128_GCM,
    "aes256-cbc": oids.AES256_CBC,
    "aes128-cbc": oids.AES128_CBC,
}
WEAK_CIPHERS = {oids.DES_EDE3_CBC: "des-ede3-cbc"}

# ECDH (RFC 5753 / SEC 1) single-pass standard DH, by the hash of the X9.63 KDF
ECDH_KDFS: dict[str, DigestName] = {
    oids.ECDH_STD_SHA256KDF: "sha256",
    oids.ECDH_STD_SHA384KDF: "sha384",
    oids.ECDH_STD_SHA512KDF: "sha512",
}
KEY_WRAPS: dict[str, int] = {oids.AES128_WRAP: 16, oids.AES192_WRAP: 24, oids.AES256_WRAP: 32}

# Hashes accepted inside RSA-OAEP parameters when decrypting. SHA-1 is still sound in OAEP
# (it is not a signature) and is what `openssl cms -keyopt rsa_padding_mode:oaep` writes by
# default, so it is read; SecureMail itself always writes SHA-256.
OAEP_HASHES: dict[str, str] = {oids.SHA1: "sha1", **DIGESTS}


_HASH_ALGORITHMS: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - OAEP decryption only, see OAEP_HASHES
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """The cryptography hash object for a digest name of the profile (or OAEP's sha1)."""
    return _HASH_ALGORITHMS[name]


def digest_name(oid: str) -> DigestName:
    """Map a digest OID to its name; refuse weak and unknown digests."""
    if oid in WEAK_DIGESTS:
        raise SmimeError(Reason.WEAK_ALGORITHM, f"digest {WEAK_DIGESTS[oid]} is not accepted")
    try:
        return DIGESTS[oid]
    except KeyError:
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"digest {oid}") from None


@lru_cache(maxsize=256)
def algorithm_identifier(dotted: str, parameters: bytes | None = None) -> bytes:
    """DER AlgorithmIdentifier; ``parameters`` is already-encoded DER, or None for absent."""
    return der.encode(der.SEQUENCE, der.oid(dotted), *(() if parameters is None else (parameters,)))


NULL = b"\x05\x00"
