"""The one error type of the S/MIME core, and the reason codes it carries.

Every failure of protect, unprotect or receipt handling raises :class:`SmimeError` with a
:class:`Reason`. The reason code is stable and machine-readable (it ends up in SMTP replies,
failure notices and the operations log); the detail is for the operator's log only and may
name certificates or algorithms, never message content.

    SmimeError(SecureMailError[Reason])   (the project's one error model: securemail.errors)
      reason: Reason   e.g. Reason.INTEGRITY_FAILED -> "integrity-failed"
      detail: str      human-readable, for logs
"""

from __future__ import annotations

from enum import StrEnum

from securemail.errors import SecureMailError


class Reason(StrEnum):
    """Why a message or receipt was refused. Values are the wire/CLI reason codes."""

    MALFORMED = "malformed"
    TOO_LARGE = "too-large"
    NOT_ENCRYPTED = "not-encrypted"
    NOT_SIGNED = "not-signed"
    NOT_FOR_US = "not-for-us"
    DECRYPT_FAILED = "decrypt-failed"
    INTEGRITY_FAILED = "integrity-failed"
    SIGNATURE_INVALID = "signature-invalid"
    SIGNER_COUNT = "signer-count"
    UNTRUSTED_SIGNER = "untrusted-signer"
    REVOKED = "revoked"
    REVOCATION_UNKNOWN = "revocation-unknown"
    CERTIFICATE_EXPIRED = "certificate-expired"
    KEY_USAGE = "key-usage"
    WEAK_ALGORITHM = "weak-algorithm"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    RECEIPT_NOT_REQUESTED = "receipt-not-requested"
    RECEIPT_MISMATCH = "receipt-mismatch"
    BAD_KEY = "bad-key"


class SmimeError(SecureMailError[Reason]):
    """A refused S/MIME operation: a stable reason code plus a detail for the log."""
