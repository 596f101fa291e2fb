"""The federation directory on disk: keys, member records, issued certificates, versions.

Layout of a federation directory ``FED``::

    federation.json                {"name": ..., "created": "YYYY-MM-DDTHH:MM:SSZ"}
    ca/root.pem, ca/root.key       the federation root CA
    operator/directory-signer.pem  the operator's directory-signing certificate (from the
    operator/directory-signer.key    root: digitalSignature, EKU oids.EKU_DIRECTORY_SIGNING)
    members/<org-id>.json          each member's working record (Member.to_json())
    issued/<serial-hex>.pem        every certificate issued, headed by "org-id:" (absent for
                                   the operator's own) and "use:" lines before the PEM block
    revoked.json                   [{serial, org_id, revoked_at, reason}], oldest first
    crl.pem                        the current CRL (re-issued by every revoke and publish)
    directory.json(.p7s)           the latest published version: canonical JSON + DER signature
    published/<serial>.json(.p7s)  every published version, append-only
    journal.jsonl                  one JSON line per change an operator made, with its reason
    .lock                          held (flock) by every command that changes FED

Security: private keys are written only as encrypted PKCS#8 (PBKDF2 600k, AES-256) with
mode 0600. Every file is written to a temporary name, fsynced and renamed, so a crash
leaves the old file or the new one, never a part. A published serial is linked into place
exclusively and never overwritten: two operators publishing at once cannot fork the chain.
The two files of ``directory.json`` are renamed one after the other; a gateway reading
between the renames sees a signature that does not match and keeps its last good version.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from securemail import durable
from securemail.directory import Member, ModelError
from securemail.federation import FederationError, FederationReason
from securemail.pki.authority import Issued, private_key_pem
from securemail.smime import SmimeError, keys

_ORG_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")  # as the directory model's org ids
_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the federation issued, and to whom and for what."""

    certificate: x509.Certificate
    org_id: str | None  # None: the operator's own
    use: str  # signing, encryption, tls or directory-signing


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate: serial, owner, when, and the RFC 5280 reason name."""

    serial: int
    org_id: str | None
    revoked_at: datetime
    reason: str


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def time_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_TIME)


class Store:
    """One federation directory; see the module docstring for its layout."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self) -> bool:
        return (self.root / "federation.json").is_file()

    def require(self) -> None:
        if not self.exists():
            raise FederationError(
                FederationReason.NOT_A_FEDERATION, f"{self.root} holds no federation.json"
            )

    @classmethod
    def stage(cls, root: Path) -> Store:
        """An empty store beside ``root``, to be filled and then moved into place."""
        if (root / "federation.json").exists():
            raise FederationError(FederationReason.FEDERATION_EXISTS, f"{root} holds one")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise FederationError(FederationReason.FEDERATION_EXISTS, f"{root} is not empty")
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = cls(Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.init-")))
        for sub in ("ca", "operator", "members", "issued", "published"):
            (staging.root / sub).mkdir()
        return staging

    def move_to(self, root: Path) -> Store:
        """Rename this staged store to ``root`` (which may be an empty directory)."""
        os.chmod(self.root, 0o755)  # noqa: S103 - the directory is published to gateways
        os.replace(self.root, root)
        return Store(root)

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the federation's lock: one changing command at a time."""
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def write_federation(self, name: str, created: datetime) -> None:
        data = {"name": name, "created": time_text(created)}
        write_atomic(self.root / "federation.json", _json(data))

    def federation_name(self) -> str:
        return str(_read_json(self.root / "federation.json")["name"])

    def root_certificate(self) -> x509.Certificate:
        return _read_cert(self.root / "ca" / "root.pem")

    def write_identity(self, role: str, issued: Issued, passphrase: bytes) -> None:
        """Write ``ca/root`` or ``operator/directory-signer`` (.pem, and .key encrypted)."""
        base = self.root / role
        write_atomic(base.with_suffix(".pem"), issued.certificate_pem())
        key = private_key_pem(issued.private_key, passphrase)
        write_atomic(base.with_suffix(".key"), key, mode=0o600)

    def read_identity(self, role: str, passphrase: bytes) -> Issued:
        base = self.root / role
        certificate = _read_cert(base.with_suffix(".pem"))
        try:
            key = keys.load_private_key(base.with_suffix(".key").read_bytes(), passphrase)
        except OSError as exc:
            raise FederationError(
                FederationReason.STORE_CORRUPT,
                f"{base}.key cannot be read ({exc.strerror}): is the offline key media mounted?",
            ) from None
        except SmimeError as error:
            raise FederationError(
                FederationReason.BAD_PASSPHRASE, f"{base}.key: {error.detail}"
            ) from None
        return Issued(certificate, key)

    def members(self) -> list[Member]:
        return [_member(p) for p in sorted((self.root / "members").glob("*.json"))]

    def member(self, org_id: str) -> Member:
        path = self.root / "members" / f"{org_id}.json"
        if not _ORG_ID.fullmatch(org_id) or not path.is_file():
            raise FederationError(FederationReason.UNKNOWN_MEMBER, f"no member {org_id!r}")
        return _member(path)

    def write_member(self, member: Member) -> None:
        write_atomic(self.root / "members" / f"{member.org_id}.json", _json(member.to_json()))

    def record_issued(self, certificate: x509.Certificate, org_id: str | None, use: str) -> None:
        header = ("" if org_id is None else f"org-id: {org_id}\n") + f"use: {use}\n"
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        path = self.root / "issued" / f"{serial_hex(certificate.serial_number)}.pem"
        write_new(path, header.encode() + pem)

    def issued(self) -> list[IssuedCertificate]:
        return [_issued(p) for p in sorted((self.root / "issued").glob("*.pem"))]

    def issued_certificate(self, serial: int) -> IssuedCertificate | None:
        path = self.root / "issued" / f"{serial_hex(serial)}.pem"
        return _issued(path) if path.is_file() else None

    def revocations(self) -> list[Revocation]:
        path = self.root / "revoked.json"
        if not path.exists():
            return []
        try:
            return [
                Revocation(
                    int(r["serial"], 16),
                    r["org_id"],
                    datetime.strptime(r["revoked_at"], _TIME).replace(tzinfo=UTC),
                    r["reason"],
                )
                for r in _read_json(path)
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise FederationError(FederationReason.STORE_CORRUPT, f"{path}: {exc}") from None

    def write_revocations(self, revocations: list[Revocation]) -> None:
        data = [
            {
                "serial": serial_hex(r.serial),
                "org_id": r.org_id,
                "revoked_at": time_text(r.revoked_at),
                "reason": r.reason,
            }
            for r in revocations
        ]
        write_atomic(self.root / "revoked.json", _json(data))

    def crl(self) -> x509.CertificateRevocationList | None:
        path = self.root / "crl.pem"
        if not path.exists():
            return None
        try:
            return x509.load_pem_x509_crl(path.read_bytes())
        except ValueError as exc:
            raise FederationError(FederationReason.STORE_CORRUPT, f"{path}: {exc}") from None

    def write_crl(self, crl: x509.CertificateRevocationList) -> None:
        write_atomic(self.root / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))

    def latest(self) -> tuple[bytes, bytes] | None:
        """The latest published (document, signature), or None before the first."""
        path = self.root / "directory.json"
        if not path.exists():
            return None
        return path.read_bytes(), (self.root / "directory.json.p7s").read_bytes()

    def publish(self, serial: int, document: bytes, signature: bytes) -> None:
        """Keep version ``serial`` for good, then make it the latest."""
        published = self.root / "published"
        write_new(published / f"{serial}.json", document)
        write_new(published / f"{serial}.json.p7s", signature)
        write_atomic(self.root / "directory.json.p7s", signature)
        write_atomic(self.root / "directory.json", document)

    def journal(self, at: datetime, action: str, **details: Any) -> None:
        """Append one line to the journal of operator changes."""
        line = json.dumps({"at": time_text(at), "action": action, **details}, sort_keys=True)
        with open(self.root / "journal.jsonl", "a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())


def write_node_directory(root: Path, files: Mapping[str, bytes]) -> None:
    """Write a member's node directory; ``keys/`` files get mode 0600 in a 0700 folder."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FederationError(FederationReason.NODE_DIR_NOT_EMPTY, f"{root} is not empty")
    for name, data in files.items():
        private = name.startswith("keys/")
        path = root / name
        path.parent.mkdir(mode=0o700 if private else 0o755, parents=True, exist_ok=True)
        write_atomic(path, data, mode=0o600 if private else 0o644)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (the one atomic write); public files are 0644."""
    durable.write_atomic(path, data, mode=mode)


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` with ``data``, refusing to replace anything already there."""
    try:
        durable.write_new(path, data, mode=mode)
    except FileExistsError:
        raise FederationError(FederationReason.SERIAL_EXISTS, f"{path} exists") from None


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False).encode() + b"\n"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise FederationError(FederationReason.STORE_CORRUPT, f"{path}: {exc}") from None


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return keys.load_certificate(path.read_bytes())
    except (OSError, SmimeError) as exc:
        raise FederationError(FederationReason.STORE_CORRUPT, f"{path}: {exc}") from None


def _member(path: Path) -> Member:
    try:
        return Member.from_json(_read_json(path))
    except (ModelError, KeyError, TypeError) as exc:
        raise FederationError(FederationReason.STORE_CORRUPT, f"{path}: {exc}") from None


def _issued(path: Path) -> IssuedCertificate:
    header, _, _ = path.read_text(encoding="ascii").partition("-----BEGIN")
    fields = dict(line.split(": ", 1) for line in header.splitlines() if ": " in line)
    return IssuedCertificate(_read_cert(path), fields.get("org-id"), fields.get("use", "?"))
