"""Key rollover for a node: the next key pair, its certificate, and the overlap window.

The life of a gateway key, in the node directory:

    keys/next-P.key + requests/next-P.csr      rollover: new key, request for the operator
    certs/next-P.pem                           install-next: the operator's certificate
    keys/P.key, certs/P.pem                    promote: next becomes current, and the old
    keys/retired-P-<time>.key, certs/…pem        current is kept as retired

P is ``signing`` or ``encryption``. Every encryption key that has its certificate —
current, next and retired — decrypts (:func:`decryption_identities`), so a message that a
sender encrypted to the old certificate, or already to the new one, stays readable through
the overlap window. Retired keys are removed by the operator after the window, once backed up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from securemail.durable import PRIVATE_FILE, PRIVATE_FOLDER, write_atomic
from securemail.errors import SecureMailError
from securemail.pki.authority import KeyType, generate_key, private_key_pem
from securemail.smime.keys import RecipientIdentity, load_certificate, load_private_key

PURPOSES = ("signing", "encryption")


class RolloverReason(StrEnum):
    NO_CURRENT = "rollover-no-current"
    NEXT_EXISTS = "rollover-next-exists"
    NO_NEXT = "rollover-no-next"
    CERTIFICATE_MISMATCH = "rollover-certificate-mismatch"
    CERTIFICATE_NOT_VALID = "rollover-certificate-not-valid"


class RolloverError(SecureMailError[RolloverReason]):
    """A rollover step that cannot be done: a reason code and what to do about it."""


@dataclass(frozen=True)
class Paths:
    """Where one purpose's keys and certificates live in a node directory."""

    node_dir: Path
    purpose: str

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}")

    def key(self, stage: str = "") -> Path:
        return self.node_dir / "keys" / f"{stage}{self.purpose}.key"

    def cert(self, stage: str = "") -> Path:
        return self.node_dir / "certs" / f"{stage}{self.purpose}.pem"

    @property
    def request(self) -> Path:
        return self.node_dir / "requests" / f"next-{self.purpose}.csr"


def _write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode)


def start(paths: Paths, passphrase: bytes, *, key_type: KeyType = "rsa2048") -> Path:
    """Make the next key (encrypted) and a certificate request like the current certificate."""
    if not paths.cert().exists():
        raise RolloverError(RolloverReason.NO_CURRENT, f"{paths.cert()} does not exist")
    if paths.key("next-").exists():
        raise RolloverError(
            RolloverReason.NEXT_EXISTS, f"{paths.key('next-')} exists: install or remove it first"
        )
    current = load_certificate(paths.cert().read_bytes())
    key = generate_key(key_type)
    builder = x509.CertificateSigningRequestBuilder().subject_name(current.subject)
    try:
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    request = builder.sign(key, hashes.SHA256())
    _write(paths.key("next-"), private_key_pem(key, passphrase))
    _write(paths.request, request.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths.request


def install(paths: Paths, certificate: bytes, passphrase: bytes, *, now: datetime) -> Path:
    """Install the operator's certificate for the next key, after checking that it fits."""
    if not paths.key("next-").exists():
        raise RolloverError(RolloverReason.NO_NEXT, "no next key: run the rollover first")
    cert = load_certificate(certificate)
    key = load_private_key(paths.key("next-").read_bytes(), passphrase)
    if cert.public_key() != key.public_key():
        raise RolloverError(
            RolloverReason.CERTIFICATE_MISMATCH, "the certificate is not for this node's next key"
        )
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise RolloverError(
            RolloverReason.CERTIFICATE_NOT_VALID,
            f"the certificate is valid {cert.not_valid_before_utc} to "
            f"{cert.not_valid_after_utc}, not now",
        )
    _write(paths.cert("next-"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths.cert("next-")


def promote(paths: Paths, *, now: datetime) -> tuple[Path, Path]:
    """Make next current; keep the old current as retired. Returns (retired key, cert)."""
    if not paths.key("next-").exists() or not paths.cert("next-").exists():
        raise RolloverError(RolloverReason.NO_NEXT, "the next key or its certificate is missing")
    stamp = now.strftime("retired-%Y%m%dT%H%M%S-")
    retired = (paths.key(stamp), paths.cert(stamp))
    if paths.key().exists():
        os.replace(paths.key(), retired[0])
    if paths.cert().exists():
        os.replace(paths.cert(), retired[1])
    os.replace(paths.key("next-"), paths.key())
    os.replace(paths.cert("next-"), paths.cert())
    paths.request.unlink(missing_ok=True)
    return retired


def decryption_identities(node_dir: Path, passphrase: bytes) -> list[RecipientIdentity]:
    """Every encryption key of the node with its certificate: current, next, then retired."""
    paths = Paths(node_dir, "encryption")
    retired = (node_dir / "keys").glob("retired-*-encryption.key")
    stems = [
        "",
        "next-",
        *sorted((p.name.removesuffix("encryption.key") for p in retired), reverse=True),
    ]
    found = []
    for stage in stems:
        if paths.key(stage).exists() and paths.cert(stage).exists():
            found.append(
                RecipientIdentity(
                    load_certificate(paths.cert(stage).read_bytes()),
                    load_private_key(paths.key(stage).read_bytes(), passphrase),
                )
            )
    return found
