"""PKCS#12 export: PBES2 with AES-256-CBC, 600,000 rounds for the bags and the MAC alike."""

from __future__ import annotations

import hmac
import os
import subprocess
from pathlib import Path

import pytest
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from securemail.keys import export
from securemail.smime.errors import Reason, SmimeError
from tests.conftest import Pki, require_tool

PASSPHRASE = "export passphrase for the test — ✓".encode()


@pytest.fixture(scope="module")
def exported(pki: Pki) -> bytes:
    """The agency gateway's key and certificate, exported once for the module."""
    return export.export_pkcs12(
        pki.agency.issued.private_key, pki.agency.certificate, PASSPHRASE, name=b"agency"
    )


def test_export_opens_with_its_passphrase_only(exported: bytes, pki: Pki) -> None:
    """The file gives back the key, certificate and name with the passphrase, nothing without."""
    loaded = pkcs12.load_pkcs12(exported, PASSPHRASE)
    assert loaded.key is not None and loaded.cert is not None
    assert loaded.key.public_key() == pki.agency.issued.private_key.public_key()
    assert loaded.cert.certificate == pki.agency.certificate
    assert loaded.cert.friendly_name == b"agency"
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(exported, b"not the passphrase")


def test_the_mac_is_keyed_with_600000_rounds(exported: bytes) -> None:
    """The MAC uses HMAC-SHA256 at the bags' round count, and readers check it."""
    pfx = asn1_pkcs12.Pfx.load(exported)
    assert pfx["mac_data"]["iterations"].native == export.EXPORT_ROUNDS
    assert pfx["mac_data"]["mac"]["digest_algorithm"]["algorithm"].native == "sha256"
    digest = pfx["mac_data"]["mac"]["digest"].native
    tampered = exported.replace(digest, bytes([digest[0] ^ 1]) + digest[1:])
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(tampered, PASSPHRASE)


def test_mac_key_derivation_matches_cryptography(pki: Pki) -> None:
    """Our RFC 7292 KDF reproduces the MAC cryptography itself writes (2,048 rounds)."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .build(PASSPHRASE)
    )
    der = pkcs12.serialize_key_and_certificates(
        b"x", pki.agency.issued.private_key, pki.agency.certificate, None, encryption
    )
    mac_data = asn1_pkcs12.Pfx.load(der)["mac_data"]
    key = export.mac_key(PASSPHRASE, mac_data["mac_salt"].native, mac_data["iterations"].native)
    content = asn1_pkcs12.Pfx.load(der)["auth_safe"]["content"].native
    assert hmac.new(key, content, "sha256").digest() == mac_data["mac"]["digest"].native


@pytest.mark.interop
def test_openssl_reads_pbes2_aes256_at_600000_rounds(exported: bytes, tmp_path: Path) -> None:
    """openssl pkcs12 -info verifies the MAC and reports PBES2, AES-256-CBC, 600,000 rounds."""
    openssl = require_tool("openssl")
    path = tmp_path / "agency.p12"
    path.write_bytes(exported)
    done = subprocess.run(
        [openssl, "pkcs12", "-in", str(path), "-info", "-noout", "-passin", "env:P12_PASS"],
        env={**os.environ, "P12_PASS": PASSPHRASE.decode()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = done.stdout + done.stderr
    bags = "PBES2, PBKDF2, AES-256-CBC, Iteration 600000, PRF hmacWithSHA256"
    assert report.count(bags) == 2, report
    assert "MAC: sha256, Iteration 600000" in report


def test_a_certificate_of_another_key_is_refused(pki: Pki) -> None:
    """Exporting a key with a certificate for a different key is refused as bad-key."""
    with pytest.raises(SmimeError) as refused:
        export.export_pkcs12(
            pki.agency.issued.private_key, pki.ministry.certificate, PASSPHRASE, name=b"x"
        )
    assert refused.value.reason is Reason.BAD_KEY


def test_an_empty_passphrase_is_refused(pki: Pki) -> None:
    """An export without a passphrase would leave the key unprotected: refused."""
    with pytest.raises(ValueError, match="passphrase"):
        export.export_pkcs12(pki.agency.issued.private_key, pki.agency.certificate, b"", name=b"x")
