"""The directory as a signed document: canonical JSON, detached CMS signature, succession.

Theory of operation. A version is the RFC 8785 canonical JSON of :class:`Directory`; its
digest (``sha256:<hex>``) names it. The federation operator signs those exact bytes with a
detached CMS SignedData (our S/MIME core, so ``openssl cms -verify`` accepts it too), by a
certificate that chains to the federation anchor and carries the directory-signing purpose.
Each version lists the digests of all earlier versions, so a gateway that accepted version
*n* can check that any later version descends from it: a lower serial is a rollback, a
different document at a known serial is a fork, a history that does not contain what the
gateway accepted is a broken chain. Each is refused with its own reason; the caller keeps
its last good version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import rfc8785
from cryptography import x509

from securemail.directory.model import Directory, HistoryEntry, Member, ModelError
from securemail.errors import SecureMailError
from securemail.smime import SignerIdentity, SmimeError, TrustStore, oids, sign, verify
from securemail.smime.limits import Limits, check_der

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class DirectoryReason(StrEnum):
    """Why a directory version was refused."""

    MALFORMED = "directory-malformed"
    NOT_CANONICAL = "directory-not-canonical"
    SIGNATURE_INVALID = "directory-signature-invalid"
    UNTRUSTED_SIGNER = "directory-untrusted-signer"
    WRONG_FEDERATION = "directory-wrong-federation"
    ROLLBACK = "directory-rollback"
    FORK = "directory-fork"
    BROKEN_CHAIN = "directory-broken-chain"


class DirectoryError(SecureMailError[DirectoryReason]):
    """A refused directory version: a reason code and a detail for the operator."""


@dataclass(frozen=True)
class Accepted:
    """What a gateway remembers of the last version it accepted."""

    serial: int
    digest: str


def canonical(directory: Directory) -> bytes:
    """The RFC 8785 canonical JSON of ``directory``: the bytes that are signed."""
    return bytes(rfc8785.dumps(directory.to_json()))


def digest(document: bytes) -> str:
    return "sha256:" + hashlib.sha256(document).hexdigest()


def sign_document(
    directory: Directory, operator: SignerIdentity, *, now: datetime
) -> tuple[bytes, bytes]:
    """(canonical JSON, detached DER signature) of ``directory`` by the operator."""
    document = canonical(directory)
    signature = sign.sign(document, operator, now=now, detached=True)
    return document, signature.der.join()


def parse(document: bytes) -> Directory:
    """Read a canonical directory document (unverified: see :func:`verify_document`)."""
    if len(document) > MAX_DOCUMENT_BYTES:
        raise DirectoryError(DirectoryReason.MALFORMED, f"over {MAX_DOCUMENT_BYTES} bytes")
    try:
        data: Any = json.loads(document)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DirectoryError(DirectoryReason.MALFORMED, f"not JSON: {exc}") from None
    try:
        if bytes(rfc8785.dumps(data)) != document:
            raise DirectoryError(
                DirectoryReason.NOT_CANONICAL, "the document is not in RFC 8785 canonical form"
            )
        return Directory.from_json(data)
    except (ModelError, KeyError, TypeError, rfc8785.CanonicalizationError) as exc:
        raise DirectoryError(DirectoryReason.MALFORMED, str(exc)) from None


def verify_document(
    document: bytes,
    signature: bytes,
    *,
    anchors: list[x509.Certificate],
    now: datetime,
    federation: str | None = None,
) -> Directory:
    """Check the operator's signature over ``document``; return the directory it holds.

    The operator certificate must chain to one of ``anchors`` and carry the
    directory-signing purpose; CRLs in the document itself are applied to it.
    """
    directory = parse(document)
    if federation is not None and directory.federation != federation:
        raise DirectoryError(
            DirectoryReason.WRONG_FEDERATION,
            f"document is for {directory.federation!r}, not {federation!r}",
        )
    try:
        check_der(signature, Limits())
        _, signed = verify.verify_signed_data(signature, detached_content=document)
    except SmimeError as error:
        raise DirectoryError(
            DirectoryReason.SIGNATURE_INVALID, f"{error.reason.value}: {error.detail}"
        ) from None
    trust = TrustStore(anchors, directory.crls, require_revocation=False)
    others = [c for c in signed.certificates if c != signed.signer]
    try:
        trust.validate(
            signed.signer, now=now, intermediates=others, purpose=oids.EKU_DIRECTORY_SIGNING
        )
    except SmimeError as error:
        raise DirectoryError(
            DirectoryReason.UNTRUSTED_SIGNER, f"{error.reason.value}: {error.detail}"
        ) from None
    return directory


def next_version(
    previous: Directory | None,
    previous_digest: str | None,
    *,
    federation: str,
    members: tuple[Member, ...],
    crls: tuple[x509.CertificateRevocationList, ...],
    now: datetime,
    validity: timedelta = timedelta(days=7),
) -> Directory:
    """The version after ``previous`` (whose canonical digest is ``previous_digest``)."""
    if previous is None:
        return Directory(federation, 1, now, now + validity, members, crls)
    if previous_digest is None:
        raise ValueError("the previous version's digest is needed to chain to it")
    history = (*previous.history, HistoryEntry(previous.serial, previous_digest))
    return Directory(federation, previous.serial + 1, now, now + validity, members, crls, history)


def check_succession(last: Accepted | None, directory: Directory, document_digest: str) -> bool:
    """Whether ``directory`` may replace ``last``; False if it is the same version.

    Raises DirectoryError for a rollback, a fork or a broken chain.
    """
    if last is None:
        return True
    if directory.serial < last.serial:
        raise DirectoryError(
            DirectoryReason.ROLLBACK,
            f"serial {directory.serial} is older than accepted {last.serial}",
        )
    if directory.serial == last.serial:
        if document_digest != last.digest:
            raise DirectoryError(
                DirectoryReason.FORK, f"a different document with the accepted serial {last.serial}"
            )
        return False
    known = {h.serial: h.digest for h in directory.history}
    if last.serial not in known:
        raise DirectoryError(
            DirectoryReason.BROKEN_CHAIN,
            f"history of serial {directory.serial} omits accepted {last.serial}",
        )
    if known[last.serial] != last.digest:
        raise DirectoryError(
            DirectoryReason.FORK,
            f"serial {directory.serial} descends from another version "
            f"{last.serial} than the one accepted",
        )
    return True
