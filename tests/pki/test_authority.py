"""The in-memory certificate authority used by demos, tests and (later) federation tools."""

from __future__ import annotations

import base64

import pytest
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from securemail.pki.authority import issue, issue_for_key, make_crl, private_key_pem
from securemail.smime import Reason, SmimeError
from securemail.smime.keys import load_private_key
from tests.conftest import NOW, Pki


def test_gateway_certificate_profile(pki: Pki) -> None:
    """Member certificates are end-entity, emailProtection, and name their domain and address."""
    cert = pki.agency.certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agency.govt.nz"]
    assert san.get_values_for_type(x509.RFC822Name) == ["gateway@agency.govt.nz"]
    assert cert.issuer == pki.ca.certificate.subject


def test_ec_encryption_certificate_uses_key_agreement(pki: Pki) -> None:
    """An EC certificate for encryption has keyAgreement, not keyEncipherment."""
    usage = pki.council.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_agreement and not usage.key_encipherment


def test_certificate_for_a_key_held_elsewhere(pki: Pki) -> None:
    """issue_for_key certifies a public key without ever seeing its private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_for_key(pki.ca, "remote", key.public_key(), now=NOW, usage="signing")
    assert cert.public_key() == key.public_key()
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_agreement


def test_an_ip_literal_host_is_an_ip_address_entry(pki: Pki) -> None:
    """A gateway endpoint given as an IP literal is named by an iPAddress SAN, which TLS
    clients match against the address they dialled, and by the same text as a dNSName for
    clients that compare only names (isync 1.4)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_for_key(
        pki.ca, "gw", key.public_key(), now=NOW, domains=("127.0.0.1", "gw.agency.govt.nz")
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["127.0.0.1", "gw.agency.govt.nz"]


def test_crl_lists_revoked_serials(pki: Pki) -> None:
    """The CRL names the revoked certificate and no other, and is signed by the root."""
    crl = make_crl(pki.ca, [pki.revoked.certificate], now=NOW)
    assert crl.get_revoked_certificate_by_serial_number(pki.revoked.certificate.serial_number)
    assert (
        crl.get_revoked_certificate_by_serial_number(pki.agency.certificate.serial_number) is None
    )
    assert crl.is_signature_valid(pki.ca.private_key.public_key())


def test_private_key_encrypted_at_rest(pki: Pki) -> None:
    """A key written with a passphrase cannot be read without it, and reads back with it."""
    issued = issue(pki.ca, "k", now=NOW)
    pem = private_key_pem(issued.private_key, b"correct horse battery staple")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    with pytest.raises(SmimeError) as refused:
        load_private_key(pem, None)
    assert refused.value.reason is Reason.BAD_KEY
    with pytest.raises(SmimeError):
        load_private_key(pem, b"wrong")
    loaded = load_private_key(pem, b"correct horse battery staple")
    assert loaded.public_key() == issued.private_key.public_key()


def test_key_encryption_uses_pbes2_with_a_strong_kdf(pki: Pki) -> None:
    """Encrypted keys are PBES2 with PBKDF2-HMAC-SHA256 at 600,000 rounds and AES-256-CBC."""
    pem = private_key_pem(pki.agency.issued.private_key, b"passphrase")
    info = asn1_keys.EncryptedPrivateKeyInfo.load(pem_to_der(pem))
    params = info["encryption_algorithm"]["parameters"]
    kdf = params["key_derivation_func"]["parameters"]
    assert info["encryption_algorithm"]["algorithm"].native == "pbes2"
    assert kdf["iteration_count"].native >= 600_000
    assert kdf["prf"]["algorithm"].native == "sha256"
    assert params["encryption_scheme"]["algorithm"].native == "aes256_cbc"


def pem_to_der(pem: bytes) -> bytes:
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    return base64.b64decode(body)
