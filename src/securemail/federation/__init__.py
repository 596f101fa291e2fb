"""The federation operator's side: root CA, member admission, revocation, publishing.

:mod:`~securemail.federation.store` keeps the federation directory on disk,
:mod:`~securemail.federation.operator` holds the operations, and ``securemail federation``
(:mod:`securemail.cli.federation`) is the command line over them. Every refusal raises the
one error below:

    FederationError
      reason: FederationReason   e.g. FederationReason.DOMAIN_CONFLICT -> "domain-conflict"
      detail: str                for the operator: names the member, domain or file
"""

from __future__ import annotations

from enum import StrEnum

from securemail.errors import SecureMailError


class FederationReason(StrEnum):
    """Why an operator command was refused. Values are the CLI reason codes."""

    FEDERATION_EXISTS = "federation-exists"
    NOT_A_FEDERATION = "not-a-federation"
    BAD_PASSPHRASE = "bad-passphrase"  # noqa: S105 - a reason code, not a secret
    MEMBER_EXISTS = "member-exists"
    UNKNOWN_MEMBER = "unknown-member"
    MEMBER_INVALID = "member-invalid"
    DOMAIN_CONFLICT = "domain-conflict"
    CSR_MALFORMED = "csr-malformed"
    CSR_SIGNATURE_INVALID = "csr-signature-invalid"
    WEAK_KEY = "weak-key"
    UNSUPPORTED_KEY = "unsupported-key"
    NO_CHANGE = "no-change"
    NO_NEXT_CERTIFICATE = "no-next-certificate"
    CERTIFICATE_REVOKED = "certificate-revoked"
    UNKNOWN_SERIAL = "unknown-serial"
    ALREADY_REVOKED = "already-revoked"
    SERIAL_EXISTS = "serial-exists"
    SELF_CHECK_FAILED = "self-check-failed"
    NODE_DIR_NOT_EMPTY = "node-dir-not-empty"
    STORE_CORRUPT = "store-corrupt"


class FederationError(SecureMailError[FederationReason]):
    """A refused operator command: a stable reason code plus a detail for the operator."""


__all__ = ["FederationError", "FederationReason"]
