"""A certificate authority in memory: root CA, gateway certificates, CRLs.

Used by the demo and the test PKI, and the base the federation operator's tools build on.
Pure: keys are generated here, nothing is written; the caller decides where keys live and
encrypts them at rest (see :func:`private_key_pem`).
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securemail.smime.keys import PrivateKey

KeyType = Literal["rsa2048", "rsa3072", "rsa4096", "p256", "p384"]
Usage = Literal["signing", "encryption", "both"]


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    certificate: x509.Certificate
    private_key: PrivateKey

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def generate_key(key_type: KeyType = "rsa2048") -> PrivateKey:
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    return ec.generate_private_key(ec.SECP256R1() if key_type == "p256" else ec.SECP384R1())


PBKDF2_ITERATIONS = 600_000  # OWASP 2023 figure for PBKDF2-HMAC-SHA256


def private_key_pem(
    key: PrivateKey, passphrase: bytes | None, *, iterations: int = PBKDF2_ITERATIONS
) -> bytes:
    """PKCS#8 PEM; with a passphrase, encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC).

    cryptography's own PKCS#8 encryption uses only 2,048 PBKDF2 iterations and cannot be
    tuned, so the EncryptedPrivateKeyInfo (RFC 8018 §6.2, RFC 5958) is built here; any
    PKCS#8 reader (OpenSSL, cryptography) opens it.
    """
    plain = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if not passphrase:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    salt, iv = os.urandom(16), os.urandom(16)
    kek = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    info = asn1_keys.EncryptedPrivateKeyInfo(
        {
            "encryption_algorithm": {
                "algorithm": "pbes2",
                "parameters": {
                    "key_derivation_func": {
                        "algorithm": "pbkdf2",
                        "parameters": {
                            "salt": asn1_algos.Pbkdf2Salt(name="specified", value=salt),
                            "iteration_count": iterations,
                            "prf": {"algorithm": "sha256"},
                        },
                    },
                    "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
                },
            },
            "encrypted_data": ciphertext,
        }
    )
    body = base64.encodebytes(info.dump()).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + "\n".join(lines)
        + "\n-----END ENCRYPTED PRIVATE KEY-----\n"
    ).encode("ascii")


def _name(common_name: str, organisation: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, "NZ"))
    return x509.Name(attrs)


def make_root_ca(
    name: str, *, now: datetime, days: int = 3650, key_type: KeyType = "rsa2048"
) -> Issued:
    """A self-signed federation root CA."""
    key = generate_key(key_type)
    subject = _name(name, name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _key_usage(usage: Usage, is_ec: bool) -> x509.KeyUsage:
    signing = usage in ("signing", "both")
    encrypting = usage in ("encryption", "both")
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=encrypting and not is_ec,
        data_encipherment=False,
        key_agreement=encrypting and is_ec,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue(
    ca: Issued, common_name: str, *, now: datetime, key_type: KeyType = "rsa2048", **profile: Any
) -> Issued:
    """Generate a key and issue its gateway certificate; see :func:`issue_for_key`."""
    key = generate_key(key_type)
    return Issued(issue_for_key(ca, common_name, key.public_key(), now=now, **profile), key)


def issue_for_key(
    ca: Issued,
    common_name: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    now: datetime,
    domains: Sequence[str] = (),
    emails: Sequence[str] = (),
    organisation: str | None = None,
    usage: Usage = "both",
    days: int = 730,
    not_before: datetime | None = None,
    extended_key_usage: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
) -> x509.Certificate:
    """Issue a certificate (by default S/MIME: emailProtection) for domains and addresses.

    The key pair stays with its owner (e.g. from a CSR); only the public key is needed.
    """
    names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
    names += [name for d in domains for name in _host_names(d)]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organisation))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(usage, isinstance(public_key, ec.EllipticCurvePublicKey)), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca.private_key, hashes.SHA256())


def _host_names(host: str) -> list[x509.GeneralName]:
    """SAN entries for ``host``; an IP literal gets an iPAddress entry and a dNSName too.

    Most TLS clients (Python's ssl, OpenSSL's host check) match an IP address only against
    iPAddress entries (RFC 5280 §4.2.1.6, RFC 6125 §1.7.2); some mail clients (isync 1.4)
    compare only dNSName strings, so the literal is listed both ways.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return [x509.DNSName(host)]
    return [x509.IPAddress(address), x509.DNSName(host)]


def make_crl(
    ca: Issued, revoked: Sequence[x509.Certificate], *, now: datetime, next_update_days: int = 7
) -> x509.CertificateRevocationList:
    """A CRL by ``ca`` listing ``revoked`` (revoked as of ``now``)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=next_update_days))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca.private_key, hashes.SHA256())
