"""A gateway's last good directory on disk, and the step that accepts a newer version.

The state directory holds ``directory.json`` and ``directory.json.p7s`` (the last good
version exactly as received) and ``accepted.json``, the rollback record::

    {"accepted_at": "2026-11-29T12:00:00Z", "digest": "sha256:…",
     "federation": "…", "serial": 2}

A version is accepted when its signature verifies against the configured anchors, its
federation is the configured one (if any) and the one accepted before (if any), and it
succeeds the version in ``accepted.json`` (:func:`check_succession`); only then are the
files replaced.
``.lock`` serialises the gateway's refresher and an operator's ``securemail directory
fetch``.

Security: the fetched document and signature are untrusted until verified, and the state
directory is trusted only as far as it verifies again: :meth:`DirectoryStore.load`
re-checks the stored signature and that the stored version is, or succeeds, the recorded
one. A refusal changes neither the stored version nor the record, and the record never
moves backwards.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from securemail.directory.document import (
    Accepted,
    DirectoryError,
    DirectoryReason,
    check_succession,
    digest,
    verify_document,
)
from securemail.directory.fetch import Fetched
from securemail.directory.model import Directory

DOCUMENT = "directory.json"
SIGNATURE = "directory.json.p7s"
RECORD = "accepted.json"
LOCK = ".lock"
STAGED = ".new"
_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Stored:
    """The last good version: the directory, its digest, and when this gateway accepted it."""

    directory: Directory
    digest: str
    accepted_at: datetime

    def is_stale(self, now: datetime) -> bool:
        """Past its next update: still served, but the operator should be told."""
        return self.directory.is_stale(now)


@dataclass(frozen=True)
class _Record:
    """The contents of ``accepted.json``."""

    serial: int
    digest: str
    federation: str
    accepted_at: datetime

    @property
    def accepted(self) -> Accepted:
        return Accepted(self.serial, self.digest)

    def to_json(self) -> bytes:
        data = {
            "serial": self.serial,
            "digest": self.digest,
            "federation": self.federation,
            "accepted_at": self.accepted_at.astimezone(UTC).strftime(_TIME),
        }
        return json.dumps(data, sort_keys=True, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> _Record:
        try:
            value: Any = json.loads(data)
            if not isinstance(value, dict) or set(value) != {
                "serial",
                "digest",
                "federation",
                "accepted_at",
            }:
                raise ValueError("fields must be serial, digest, federation, accepted_at")
            serial, digest_, federation = value["serial"], value["digest"], value["federation"]
            if type(serial) is not int or serial < 1:
                raise ValueError(f"serial {serial!r}")
            if not isinstance(digest_, str) or not digest_.startswith("sha256:"):
                raise ValueError(f"digest {digest_!r}")
            if not isinstance(federation, str):
                raise ValueError(f"federation {federation!r}")
            when = datetime.strptime(str(value["accepted_at"]), _TIME).replace(tzinfo=UTC)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DirectoryError(DirectoryReason.MALFORMED, f"{RECORD}: {exc}") from None
        return cls(serial, digest_, federation, when)


def _check_federation(record: _Record, directory: Directory) -> None:
    """The federation of an accepted directory is kept, configured or not."""
    if record.federation != directory.federation:
        raise DirectoryError(
            DirectoryReason.WRONG_FEDERATION,
            f"{directory.federation!r} is not {record.federation!r}, accepted before",
        )


class DirectoryStore:
    """The state directory of one gateway: load the last good version, accept newer ones."""

    def __init__(
        self,
        state: Path,
        anchors: Sequence[x509.Certificate],
        *,
        federation: str | None = None,
    ) -> None:
        if not anchors:
            raise ValueError("at least one trust anchor is needed to verify the directory")
        self.state = state
        self.anchors = list(anchors)
        self.federation = federation

    def load(self, now: datetime) -> Stored | None:
        """The last good version, verified again; None if nothing was ever accepted.

        Raises DirectoryError (with the rule broken) if the stored files do not verify or
        the stored version neither is nor succeeds the recorded one.
        """
        if not self.state.is_dir():
            return None
        with self._locked():
            self._recover()
            return self._load_verified(now)

    def accept(self, fetched: Fetched, now: datetime) -> tuple[Stored, bool]:
        """Verify ``fetched`` and make it the last good version if it succeeds the last one.

        Returns (the last good version, whether it changed). Raises DirectoryError, with
        nothing on disk changed, if the signature, the federation or the succession fails.
        """
        directory = verify_document(
            fetched.document,
            fetched.signature,
            anchors=self.anchors,
            now=now,
            federation=self.federation,
        )
        document_digest = digest(fetched.document)
        self.state.mkdir(mode=0o755, parents=True, exist_ok=True)
        with self._locked():
            self._recover()
            record = self._read_record()
            if record is not None:
                _check_federation(record, directory)
                if not check_succession(record.accepted, directory, document_digest):
                    return Stored(directory, document_digest, record.accepted_at), False
            new = _Record(directory.serial, document_digest, directory.federation, now)
            self._replace(fetched, new)
            return Stored(directory, document_digest, now), True

    def _path(self, name: str) -> Path:
        return self.state / name

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._path(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_record(self) -> _Record | None:
        try:
            data = self._path(RECORD).read_bytes()
        except FileNotFoundError:
            return None
        return _Record.from_json(data)

    def _load_verified(self, now: datetime) -> Stored | None:
        record = self._read_record()
        if record is None and not self._path(DOCUMENT).exists():
            return None
        try:
            document = self._path(DOCUMENT).read_bytes()
            signature = self._path(SIGNATURE).read_bytes()
        except FileNotFoundError as exc:
            raise DirectoryError(
                DirectoryReason.MALFORMED, f"stored state {self.state}: {exc.filename} is missing"
            ) from None
        try:
            directory = verify_document(
                document, signature, anchors=self.anchors, now=now, federation=self.federation
            )
            document_digest = digest(document)
            if record is not None:
                _check_federation(record, directory)
                if record.accepted == Accepted(directory.serial, document_digest):
                    return Stored(directory, document_digest, record.accepted_at)
                # Only a crash between steps 2 and 3 of _replace leaves a verified pair
                # ahead of the record; it is recorded if, and only if, it succeeds it.
                check_succession(record.accepted, directory, document_digest)
        except DirectoryError as error:
            raise DirectoryError(
                error.reason, f"stored state {self.state}: {error.detail}"
            ) from None
        self._write_record(_Record(directory.serial, document_digest, directory.federation, now))
        return Stored(directory, document_digest, now)

    def _replace(self, fetched: Fetched, record: _Record) -> None:
        # Write order. The document and its signature must change together, and two renames
        # are not one atomic step, so both are first staged under names _recover() knows:
        #  1. directory.json.new, then directory.json.p7s.new, each fsynced with the folder.
        #     A crash here leaves the old pair in place; _recover() sees directory.json.new
        #     and deletes what was staged.
        #  2. rename directory.json.new over directory.json, then directory.json.p7s.new over
        #     directory.json.p7s. A crash between the two leaves only the staged signature
        #     (complete: it was fsynced in step 1), which _recover() renames into place.
        #  3. accepted.json last, by temporary file and rename: the rollback record never
        #     names a version whose files are not both in place. A crash before it leaves the
        #     old record; load() finds the newer pair, verifies it, checks that it succeeds
        #     the record, and records it.
        self._write_synced(self._path(DOCUMENT + STAGED), fetched.document)
        self._write_synced(self._path(SIGNATURE + STAGED), fetched.signature)
        for name in (DOCUMENT, SIGNATURE):
            os.replace(self._path(name + STAGED), self._path(name))
            self._sync_folder()
        self._write_record(record)

    def _write_record(self, record: _Record) -> None:
        self._write_synced(self._path(RECORD + STAGED), record.to_json())
        os.replace(self._path(RECORD + STAGED), self._path(RECORD))
        self._sync_folder()

    def _recover(self) -> None:
        """Finish or undo what a crash interrupted in :meth:`_replace` (see its comment)."""
        staged_document = self._path(DOCUMENT + STAGED)
        staged_signature = self._path(SIGNATURE + STAGED)
        if staged_document.exists():
            staged_document.unlink()
            staged_signature.unlink(missing_ok=True)
            self._sync_folder()
        elif staged_signature.exists():
            os.replace(staged_signature, self._path(SIGNATURE))
            self._sync_folder()
        self._path(RECORD + STAGED).unlink(missing_ok=True)

    def _write_synced(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        self._sync_folder()

    def _sync_folder(self) -> None:
        fd = os.open(self.state, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
