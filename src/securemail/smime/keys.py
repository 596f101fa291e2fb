"""Certificates and private keys as the S/MIME core uses them, and how they are loaded.

An identity is built once and reused for many messages: it caches the encodings that every
signature or decryption needs (issuer and serial, certificate hash), so the per-message
path does no certificate re-serialisation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from securemail.smime import der
from securemail.smime.errors import Reason, SmimeError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
MIN_RSA_BITS = 2048
EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


@lru_cache(maxsize=1024)
def issuer_and_serial(cert: x509.Certificate) -> bytes:
    """DER IssuerAndSerialNumber (RFC 5652 §10.2.4) of a certificate (cached: peers repeat)."""
    issuer = cert.issuer.public_bytes()
    return der.encode(der.SEQUENCE, issuer, der.integer(cert.serial_number))


def subject_key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return ext.value.digest


@lru_cache(maxsize=1024)
def public_key(cert: x509.Certificate) -> CertificatePublicKeyTypes:
    """The certificate's public key (cached: loading it costs more than an RSA verify)."""
    return cert.public_key()


def check_public_key(cert: x509.Certificate) -> None:
    """Refuse keys the profile does not allow: RSA < 2048 bits, curves but P-256/384/521."""
    try:
        key = public_key(cert)
    except UnsupportedAlgorithm as exc:  # e.g. an unknown key OID in a received certificate
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"certificate key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise SmimeError(Reason.WEAK_ALGORITHM, f"RSA key of {key.key_size} bits")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, EC_CURVES):
            raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"EC curve {key.curve.name}")
    else:
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"{type(key).__name__} keys")


@dataclass(frozen=True)
class SignerIdentity:
    """A signing certificate, its private key, and intermediates to send along."""

    certificate: x509.Certificate
    private_key: PrivateKey
    chain: tuple[x509.Certificate, ...] = field(default=())

    def __post_init__(self) -> None:
        check_public_key(self.certificate)
        if self.certificate.public_key() != self.private_key.public_key():
            raise SmimeError(Reason.BAD_KEY, "private key does not match the certificate")

    @cached_property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @cached_property
    def issuer_and_serial(self) -> bytes:
        return issuer_and_serial(self.certificate)

    @cached_property
    def certificate_sha256(self) -> bytes:
        return hashlib.sha256(self.certificate_der).digest()

    @cached_property
    def certificates_der(self) -> tuple[bytes, ...]:
        extra = (c.public_bytes(serialization.Encoding.DER) for c in self.chain)
        return (self.certificate_der, *extra)


@dataclass(frozen=True)
class RecipientIdentity:
    """A decryption certificate and its private key (one gateway may hold several)."""

    certificate: x509.Certificate
    private_key: PrivateKey

    def __post_init__(self) -> None:
        if self.certificate.public_key() != self.private_key.public_key():
            raise SmimeError(Reason.BAD_KEY, "private key does not match the certificate")

    @cached_property
    def issuer_and_serial(self) -> bytes:
        return issuer_and_serial(self.certificate)

    @cached_property
    def subject_key_identifier(self) -> bytes | None:
        return subject_key_identifier(self.certificate)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Read one DER certificate or any number of PEM certificates."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise SmimeError(Reason.MALFORMED, f"certificate: {exc}") from None


def load_certificate(data: bytes) -> x509.Certificate:
    certs = load_certificates(data)
    if len(certs) != 1:
        raise SmimeError(Reason.MALFORMED, f"expected one certificate, found {len(certs)}")
    return certs[0]


def load_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Read a PEM or DER private key (PKCS#8 or traditional), encrypted when passphrase given."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, passphrase)
        else:
            key = serialization.load_der_private_key(data, passphrase)
    except (ValueError, TypeError) as exc:
        raise SmimeError(Reason.BAD_KEY, f"private key could not be loaded: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SmimeError(Reason.UNSUPPORTED_ALGORITHM, f"{type(key).__name__} keys")
    return key
