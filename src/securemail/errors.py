"""The one error model: every refusal carries a stable reason code and a detail.

    SecureMailError[R]          reason: R (a StrEnum: the machine-readable code)
      SmimeError                  smime.errors.Reason          e.g. "integrity-failed"
      DirectoryError              directory.DirectoryReason    e.g. "directory-rollback"
      FetchError                  directory.fetch.FetchReason  e.g. "directory-unavailable"
      FederationError             federation.FederationReason  e.g. "domain-conflict"
      KeyBackupError              keys.shares.Reason           e.g. "shares-mixed"
      RolloverError               keys.rollover.RolloverReason e.g. "rollover-next-exists"
    Reason codes without an exception (an outcome, not a refusal to raise):
      config.reasons.HoldReason     inbound mail held, e.g. "key-unavailable"
      config.reasons.UpstreamReason an upstream queue's, e.g. "upstream-ciphertext-only"

The code is what peers, failure notices, the CLI (``error: <code>: <detail>``) and logs
carry; the detail is for the operator and never holds message content or key material.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Generic, TypeVar

R = TypeVar("R", bound=StrEnum)


class SecureMailError(Exception, Generic[R]):
    """A refusal: ``reason`` (a stable code) and ``detail`` (for the operator)."""

    def __init__(self, reason: R, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
