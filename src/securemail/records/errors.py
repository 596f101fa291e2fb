"""The records' refusals, each with its reason code."""

from __future__ import annotations

from enum import StrEnum

from securemail.errors import SecureMailError


class RecordsReason(StrEnum):
    LOG_BROKEN = "records-log-broken"  # verify found a record or checkpoint that does not hold
    SOURCE_BROKEN = "records-source-broken"  # an audit file's own chain does not hold
    BAD_HOLD = "records-bad-hold"  # a hold names neither an address nor a Message-ID
    NO_HOLD = "records-no-hold"  # release of a hold that does not exist or was released
    OUTSIDE_STORAGE = "records-outside-storage"  # export outside the node's own storage
    BAD_REQUEST = "records-bad-request"  # an export without a subject or query, or bad dates
    NO_SIGNER = "records-no-signer"  # the console cannot load the node's key to sign an export


class RecordsError(SecureMailError[RecordsReason]):
    """A records operation refused; the detail never holds message content."""
