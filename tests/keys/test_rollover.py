"""Key rollover: the next key, its certificate, promotion, and decryption through the overlap."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from securemail.keys import rollover
from securemail.pki.authority import issue, issue_for_key, private_key_pem
from securemail.smime import protect, unprotect
from tests.conftest import MESSAGE, NOW, Pki

PASSPHRASE = b"node passphrase for rollover tests"


@pytest.fixture
def node(pki: Pki, tmp_path: Path) -> Path:
    """A node directory with a current encryption key and certificate."""
    current = issue(pki.ca, "gw", now=NOW, domains=["ministry.govt.nz"], usage="encryption")
    (tmp_path / "keys").mkdir()
    (tmp_path / "certs").mkdir()
    (tmp_path / "keys" / "encryption.key").write_bytes(
        private_key_pem(current.private_key, PASSPHRASE)
    )
    (tmp_path / "certs" / "encryption.pem").write_bytes(current.certificate_pem())
    return tmp_path


def _operator_issues(pki: Pki, request_path: Path) -> bytes:
    """What the federation operator does with the request: certify its key."""
    request = x509.load_pem_x509_csr(request_path.read_bytes())
    assert request.is_signature_valid
    key = request.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    cert = issue_for_key(
        pki.ca,
        "gw next",
        key,
        now=NOW,
        domains=["ministry.govt.nz"],
        usage="encryption",
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _to(node: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((node / "certs" / name).read_bytes())


def _opens(pki: Pki, node: Path, sent: bytes) -> bool:
    identities = rollover.decryption_identities(node, PASSPHRASE)
    return unprotect(sent, identities=identities, trust=pki.trust(), now=NOW).content == MESSAGE


def test_rollover_keeps_old_and_new_mail_readable(pki: Pki, node: Path) -> None:
    """Mail to the old key and to the new key both open before and after promotion."""
    paths = rollover.Paths(node, "encryption")
    old_mail = protect(MESSAGE, pki.agency.signer, [_to(node, "encryption.pem")], now=NOW).message
    request = rollover.start(paths, PASSPHRASE)
    assert request.exists() and paths.key("next-").exists()
    rollover.install(paths, _operator_issues(pki, request), PASSPHRASE, now=NOW)
    new_mail = protect(
        MESSAGE, pki.agency.signer, [_to(node, "next-encryption.pem")], now=NOW
    ).message
    assert _opens(pki, node, old_mail) and _opens(pki, node, new_mail)
    retired_key, _ = rollover.promote(paths, now=NOW + timedelta(days=1))
    assert retired_key.exists() and not paths.key("next-").exists()
    assert _opens(pki, node, old_mail) and _opens(pki, node, new_mail)
    assert len(rollover.decryption_identities(node, PASSPHRASE)) == 2


def test_second_rollover_refused_while_one_is_pending(node: Path) -> None:
    """A pending next key is never overwritten."""
    paths = rollover.Paths(node, "encryption")
    rollover.start(paths, PASSPHRASE)
    with pytest.raises(rollover.RolloverError) as refused:
        rollover.start(paths, PASSPHRASE)
    assert refused.value.reason is rollover.RolloverReason.NEXT_EXISTS


def test_certificate_for_another_key_refused(pki: Pki, node: Path) -> None:
    """A certificate that does not certify the next key is not installed."""
    paths = rollover.Paths(node, "encryption")
    rollover.start(paths, PASSPHRASE)
    with pytest.raises(rollover.RolloverError) as refused:
        rollover.install(paths, pki.agency.issued.certificate_pem(), PASSPHRASE, now=NOW)
    assert refused.value.reason is rollover.RolloverReason.CERTIFICATE_MISMATCH
    assert not paths.cert("next-").exists()


def test_promote_needs_an_installed_next(node: Path) -> None:
    """Promotion without a next certificate is refused and the current key stays."""
    paths = rollover.Paths(node, "encryption")
    rollover.start(paths, PASSPHRASE)
    with pytest.raises(rollover.RolloverError) as refused:
        rollover.promote(paths, now=NOW)
    assert refused.value.reason is rollover.RolloverReason.NO_NEXT
    assert paths.key().exists() and paths.cert().exists()


def test_request_keeps_the_current_subject_and_names(node: Path) -> None:
    """The certificate request names the same subject and domains as the current certificate."""
    request_path = rollover.start(rollover.Paths(node, "encryption"), PASSPHRASE)
    request = x509.load_pem_x509_csr(request_path.read_bytes())
    current = _to(node, "encryption.pem")
    assert request.subject == current.subject
    san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ministry.govt.nz"]
