"""The storage layer's refusals: a database that is not durable, or one that failed."""

from __future__ import annotations

from enum import StrEnum

from securemail.errors import SecureMailError


class StorageReason(StrEnum):
    UNAVAILABLE = "database-unavailable"  # a statement or commit failed: answer 451, retry
    UNSAFE_SETTINGS = "database-unsafe-settings"  # a commit would not be durable: refuse


class StorageError(SecureMailError[StorageReason]):
    """The database refused or failed; the detail names the action, never a value."""
