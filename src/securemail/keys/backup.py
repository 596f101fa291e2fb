"""Key backup with split knowledge: an AES-256-GCM archive whose key is split into SLIP-39 shares.

Theory of operation. A backup is one archive file and N share files. The archive holds the
node's private keys (PKCS#8) and certificates, sealed under a fresh random 256-bit key with
AES-256-GCM; its header (format, backup id, creation time, share count and threshold, the
SLIP-39 identifier of the shares, the node's organisation) is the associated data, so none
of it can be changed unnoticed. The key is never stored: SLIP-0039 Shamir secret sharing
splits it into N mnemonic shares, any K of which recover it; fewer than K reveal nothing
about it, so no custodian alone, nor K-1 together, can open the archive.

Restore refuses in the order that helps the operator most: a share that does not parse or
fails its RS1024 checksum (``share-invalid``); shares whose SLIP-39 identifiers differ from
each other or from the archive's (``shares-mixed``, naming the files); fewer than K distinct
shares (``shares-insufficient``); and only then, after combining, an archive that does not
open (``backup-integrity``): any change to its header, nonce or ciphertext fails the tag.
The shares themselves, their file text and their checks are in :mod:`securemail.keys.shares`.

Pure: keys and bytes in, bytes out; the caller passes ``now`` and does all file I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securemail.keys.shares import (
    KeyBackupError,
    Reason,
    combine_shares,
    format_share,
    share_identifier,
    split_key,
)
from securemail.smime.errors import SmimeError
from securemail.smime.keys import PrivateKey, load_certificates, load_private_key

FORMAT = "securemail-key-backup/1"
CIPHER = "aes-256-gcm"
MAX_SHARES = 16  # SLIP-0039: four bits hold the member count
MAX_ARCHIVE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
T = TypeVar("T")


def check_file_name(name: str, suffix: str) -> str:
    """``name`` if it is a plain file name ending in ``suffix`` (never a path); else ValueError."""
    if not name.endswith(suffix) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{name!r} is not a plain file name ending in {suffix}")
    return name


@dataclass(frozen=True)
class NamedKey:
    """A private key and its file name in the node's ``keys/`` directory."""

    name: str
    key: PrivateKey

    def __post_init__(self) -> None:
        check_file_name(self.name, ".key")


@dataclass(frozen=True)
class NamedCertificates:
    """The certificates of one PEM file in the node's ``certs/`` directory."""

    name: str
    certificates: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        check_file_name(self.name, ".pem")

    def pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.certificates)


@dataclass(frozen=True)
class NodeKeys:
    """What a backup holds: a node's private keys and certificates, and its organisation."""

    keys: tuple[NamedKey, ...]
    certificates: tuple[NamedCertificates, ...] = ()
    org_id: str | None = None


@dataclass(frozen=True)
class Header:
    """The archive's clear header; all of it is bound to the ciphertext as associated data."""

    backup_id: str
    created: str
    org_id: str | None
    shares: int
    threshold: int
    identifier: int  # SLIP-0039 identifier: the same in every share of this backup

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "backup_id": self.backup_id,
            "created": self.created,
            "org_id": self.org_id,
            "shares": self.shares,
            "threshold": self.threshold,
            "identifier": self.identifier,
            "cipher": CIPHER,
        }

    def associated_data(self) -> bytes:
        return json.dumps(self.as_json(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Sealed:
    """A parsed archive file: header, GCM nonce and ciphertext (with its tag)."""

    header: Header
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class Backup:
    """A new backup: the archive file's bytes and one share text per custodian, in order."""

    header: Header
    archive: bytes
    shares: tuple[str, ...]


@dataclass(frozen=True)
class Restored:
    """What a restore recovered, and which share numbers (1-based) were combined."""

    header: Header
    node: NodeKeys
    shares_used: tuple[int, ...]


def check_split(shares: int, threshold: int, *, allow_single_custodian: bool = False) -> None:
    """Refuse share counts SLIP-39 cannot make, and a threshold of 1 unless allowed."""
    if not 1 <= threshold <= shares <= MAX_SHARES:
        raise KeyBackupError(
            Reason.SPLIT_POLICY,
            f"need 1 <= threshold <= shares <= {MAX_SHARES}, got {threshold} of {shares}",
        )
    if threshold == 1 and not allow_single_custodian:
        raise KeyBackupError(
            Reason.SPLIT_POLICY,
            "a threshold of 1 lets any one custodian restore every key alone: "
            "that is not split knowledge",
        )


def _key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _plaintext(header: Header, node: NodeKeys) -> bytes:
    content = {
        "backup_id": header.backup_id,
        "keys": [{"name": k.name, "pkcs8": _key_pem(k.key)} for k in node.keys],
        "certificates": [{"name": c.name, "pem": c.pem().decode()} for c in node.certificates],
    }
    return json.dumps(content, sort_keys=True).encode()


def encode_archive(sealed: Sealed) -> bytes:
    """The archive file: canonical JSON of header, nonce and ciphertext (base64)."""
    document = {
        "header": sealed.header.as_json(),
        "nonce": base64.b64encode(sealed.nonce).decode(),
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }
    return json.dumps(document, indent=2).encode() + b"\n"


def make_backup(
    node: NodeKeys,
    *,
    shares: int,
    threshold: int,
    now: datetime,
    allow_single_custodian: bool = False,
) -> Backup:
    """Seal ``node`` under a fresh key and split the key into ``shares`` custodian shares."""
    check_split(shares, threshold, allow_single_custodian=allow_single_custodian)
    if not node.keys:
        raise KeyBackupError(Reason.NO_KEYS, "there are no private keys to back up")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    key = AESGCM.generate_key(bit_length=256)
    mnemonics = split_key(key, shares, threshold)
    header = Header(
        backup_id=secrets.token_hex(8),
        created=now.astimezone(UTC).isoformat(timespec="seconds"),
        org_id=node.org_id,
        shares=shares,
        threshold=threshold,
        identifier=share_identifier(mnemonics[0]),
    )
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, _plaintext(header, node), header.associated_data())
    texts = tuple(
        format_share(header, number, mnemonic) for number, mnemonic in enumerate(mnemonics, start=1)
    )
    return Backup(header, encode_archive(Sealed(header, nonce, ciphertext)), texts)


def _header(value: Any) -> Header:
    header = Header(
        backup_id=_typed(value["backup_id"], str),
        created=_typed(value["created"], str),
        org_id=None if value["org_id"] is None else _typed(value["org_id"], str),
        shares=_typed(value["shares"], int),
        threshold=_typed(value["threshold"], int),
        identifier=_typed(value["identifier"], int),
    )
    if header.as_json() != value:
        raise ValueError("unknown format, cipher or header fields")
    return header


def _typed(value: Any, kind: type[T]) -> T:
    if type(value) is not kind:
        raise TypeError(f"a {type(value).__name__} where a {kind.__name__} belongs")
    return value


def read_archive(data: bytes) -> Sealed:
    """Parse an archive file; anything but the exact form :func:`make_backup` writes is refused."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise KeyBackupError(Reason.BACKUP_INTEGRITY, "the backup file is too large")
    try:
        document = json.loads(data)
        header = _header(document["header"])
        sealed = Sealed(
            header,
            base64.b64decode(_typed(document["nonce"], str), validate=True),
            base64.b64decode(_typed(document["ciphertext"], str), validate=True),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        detail = f"the backup file is damaged or altered, or not a key backup ({exc})"
        raise KeyBackupError(Reason.BACKUP_INTEGRITY, detail) from None
    if len(sealed.nonce) != 12 or encode_archive(sealed) != data:
        detail = "the backup file was altered: it is not in the form a backup is written in"
        raise KeyBackupError(Reason.BACKUP_INTEGRITY, detail)
    return sealed


def _node(content: Any, header: Header) -> NodeKeys:
    if content["backup_id"] != header.backup_id:
        raise ValueError("the sealed content names another backup")
    keys = tuple(
        NamedKey(_typed(k["name"], str), load_private_key(_typed(k["pkcs8"], str).encode()))
        for k in content["keys"]
    )
    certificates = tuple(
        NamedCertificates(
            _typed(c["name"], str), tuple(load_certificates(_typed(c["pem"], str).encode()))
        )
        for c in content["certificates"]
    )
    names = [k.name for k in keys] + [c.name for c in certificates]
    if not keys or len(set(names)) != len(names):
        raise ValueError("no keys, or two files with one name")
    return NodeKeys(keys, certificates, header.org_id)


def open_archive(sealed: Sealed, key: bytes) -> NodeKeys:
    """Decrypt and check a sealed archive with the key its shares make."""
    try:
        plaintext = AESGCM(key).decrypt(
            sealed.nonce, sealed.ciphertext, sealed.header.associated_data()
        )
    except InvalidTag:
        detail = (
            f"backup {sealed.header.backup_id} does not open with the key the shares make: "
            "the backup file was altered, or the shares are of another backup"
        )
        raise KeyBackupError(Reason.BACKUP_INTEGRITY, detail) from None
    try:
        return _node(json.loads(plaintext), sealed.header)
    except (ValueError, KeyError, TypeError, SmimeError) as exc:
        detail = f"backup {sealed.header.backup_id} holds invalid content: {exc}"
        raise KeyBackupError(Reason.BACKUP_INTEGRITY, detail) from None


def restore_backup(archive: bytes, shares: Sequence[tuple[str, bytes]]) -> Restored:
    """Recover a node's keys from its archive file and (file name, content) shares."""
    sealed = read_archive(archive)
    key, used = combine_shares(sealed.header, shares)
    return Restored(sealed.header, open_archive(sealed, key), used)


__all__ = [  # the refusals are defined in shares.py; backup and restore raise them too
    "CIPHER",
    "FORMAT",
    "MAX_ARCHIVE_BYTES",
    "MAX_SHARES",
    "Backup",
    "Header",
    "KeyBackupError",
    "NamedCertificates",
    "NamedKey",
    "NodeKeys",
    "Reason",
    "Restored",
    "Sealed",
    "check_file_name",
    "check_split",
    "encode_archive",
    "make_backup",
    "open_archive",
    "read_archive",
    "restore_backup",
]
