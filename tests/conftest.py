"""Shared fixtures: a small test PKI made fresh for the session (no committed keys)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from securemail.deliver.seal import MailboxSeal
from securemail.pki.authority import Issued, KeyType, issue, make_crl, make_root_ca, private_key_pem
from securemail.smime import RecipientIdentity, SignerIdentity, TrustStore

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SEAL = MailboxSeal(bytes(range(32)))  # the mailbox seal of the node under test


@dataclass(frozen=True)
class Org:
    """A test member organisation: one gateway certificate used to sign and decrypt."""

    domain: str
    issued: Issued

    @property
    def certificate(self) -> x509.Certificate:
        return self.issued.certificate

    @property
    def signer(self) -> SignerIdentity:
        return SignerIdentity(self.issued.certificate, self.issued.private_key)

    @property
    def recipient(self) -> RecipientIdentity:
        return RecipientIdentity(self.issued.certificate, self.issued.private_key)

    def write(self, directory: Path, passphrase: bytes | None = None) -> tuple[Path, Path]:
        """Write certificate and key as PEM files; return (cert path, key path)."""
        cert_path = directory / f"{self.domain}.pem"
        key_path = directory / f"{self.domain}.key"
        cert_path.write_bytes(self.issued.certificate_pem())
        key_path.write_bytes(private_key_pem(self.issued.private_key, passphrase))
        return cert_path, key_path


@dataclass(frozen=True)
class Pki:
    """A federation root, member gateways, and the CRL that revokes ``revoked``."""

    ca: Issued
    agency: Org  # RSA-2048
    ministry: Org  # RSA-2048
    council: Org  # EC P-256
    revoked: Org
    crl: x509.CertificateRevocationList

    def trust(self, *, require_revocation: bool = True) -> TrustStore:
        return TrustStore([self.ca.certificate], [self.crl], require_revocation=require_revocation)

    def write_ca(self, directory: Path) -> tuple[Path, Path]:
        """Write the anchor and the CRL (PEM); return their paths."""
        ca_path = directory / "ca.pem"
        crl_path = directory / "crl.pem"
        ca_path.write_bytes(self.ca.certificate_pem())
        crl_path.write_bytes(self.crl.public_bytes(serialization.Encoding.PEM))
        return ca_path, crl_path


def _org(ca: Issued, domain: str, key_type: KeyType = "rsa2048") -> Org:
    return Org(
        domain,
        issue(
            ca,
            f"SecureMail gateway {domain}",
            now=NOW,
            domains=[domain],
            emails=[f"gateway@{domain}"],
            key_type=key_type,
        ),
    )


@pytest.fixture(scope="session")
def pki() -> Pki:
    """A test federation made once per session."""
    ca = make_root_ca("SecureMail Test Federation", now=NOW)
    revoked = _org(ca, "revoked.example.nz")
    return Pki(
        ca=ca,
        agency=_org(ca, "agency.govt.nz"),
        ministry=_org(ca, "ministry.govt.nz"),
        council=_org(ca, "council.govt.nz", "p256"),
        revoked=revoked,
        crl=make_crl(ca, [revoked.certificate], now=NOW),
    )


MESSAGE = (
    b"From: Alice Example <alice@agency.govt.nz>\r\n"
    b"To: bob@ministry.govt.nz\r\n"
    b"Subject: Budget figures for review\r\n"
    b"Date: Sun, 29 Nov 2026 12:00:00 +1300\r\n"
    b"Message-ID: <test-1@agency.govt.nz>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"The figures are attached.\r\n"
)


@pytest.fixture
def message() -> bytes:
    return MESSAGE


def require_tool(name: str) -> str:
    """Path of an external tool; skip (or fail with SECUREMAIL_REQUIRE_ALL=1) if missing."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package: {_PACKAGES.get(name, name)})"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)
    return path


_PACKAGES = {
    "openssl": "openssl",
    "gpgsm": "gpgsm",
    "gpgconf": "gpgconf",
    "dovecot": "dovecot-imapd",
    "doveadm": "dovecot-core",
    "doveconf": "dovecot-core",
    "mbsync": "isync",
    "swaks": "swaks",
}

ToolCheck = Callable[[str], str]
