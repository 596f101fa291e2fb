"""PKCS#12 export of a node's private key and certificate, for a system that must import them.

Security: the key and certificate bags are encrypted with PBES2 (PBKDF2-HMAC-SHA256,
600,000 rounds, AES-256-CBC). The file's integrity MAC is keyed from the same passphrase,
but cryptography derives that key with a fixed 2,048 rounds of the PKCS#12 KDF, so a
guesser could test passphrases against the MAC at 1/300 of the cost the bags promise. The
MAC is therefore computed afresh here with the same 600,000 rounds (RFC 7292 §5.1 and
Appendix B.2). The passphrase is all that protects the exported key: it must not be empty.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from securemail.smime.errors import Reason, SmimeError
from securemail.smime.keys import PrivateKey

EXPORT_ROUNDS = 600_000  # as for keys at rest: OWASP 2023 figure for PBKDF2-HMAC-SHA256
_BLOCK = 64  # the PKCS#12 KDF's v for SHA-256: the hash's input block size in bytes
_MAC_KEY_ID = 3  # RFC 7292 B.3: ID byte 3 derives an integrity (MAC) key


def export_pkcs12(
    key: PrivateKey, certificate: x509.Certificate, passphrase: bytes, *, name: bytes
) -> bytes:
    """DER PKCS#12 holding ``key`` and ``certificate`` under the friendly name ``name``."""
    if certificate.public_key() != key.public_key():
        raise SmimeError(Reason.BAD_KEY, "private key does not match the certificate")
    if not passphrase:
        raise ValueError("an export passphrase is required")
    passphrase.decode("utf-8")  # the MAC's BMPString form needs text; raises if it is not
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(EXPORT_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    pfx = pkcs12.serialize_key_and_certificates(name, key, certificate, None, encryption)
    return _replace_mac(pfx, passphrase)


def _fill(data: bytes) -> bytes:
    """``data`` repeated to the next multiple of the block size (RFC 7292 B.2 steps 2-3)."""
    length = _BLOCK * -(-len(data) // _BLOCK)
    return (data * (length // len(data) + 1))[:length]


def mac_key(passphrase: bytes, salt: bytes, rounds: int) -> bytes:
    """The PKCS#12 KDF (RFC 7292 B.2) with SHA-256 for a 32-byte MAC key.

    A 32-byte key is one hash output, so only A_1 is needed and the B/I steps drop out.
    """
    password = passphrase.decode("utf-8").encode("utf-16-be") + b"\0\0"
    digest = hashlib.sha256(bytes([_MAC_KEY_ID]) * _BLOCK + _fill(salt) + _fill(password)).digest()
    for _ in range(rounds - 1):
        digest = hashlib.sha256(digest).digest()
    return digest


def _replace_mac(der: bytes, passphrase: bytes) -> bytes:
    """``der`` with its MacData recomputed: HMAC-SHA256, fresh salt, EXPORT_ROUNDS rounds."""
    pfx = asn1_pkcs12.Pfx.load(der)
    auth_safe = pfx["auth_safe"]
    salt = os.urandom(16)
    key = mac_key(passphrase, salt, EXPORT_ROUNDS)
    mac = hmac.new(key, auth_safe["content"].native, "sha256").digest()
    mac_data = {
        "mac": {"digest_algorithm": {"algorithm": "sha256"}, "digest": mac},
        "mac_salt": salt,
        "iterations": EXPORT_ROUNDS,
    }
    rebuilt = asn1_pkcs12.Pfx(
        {"version": pfx["version"], "auth_safe": auth_safe, "mac_data": mac_data}
    )
    return bytes(rebuilt.dump())
