"""Delivery evidence: the facts a signed receipt stands for, and the one error of its formats.

The receiving gateway states, per recipient, what it delivered and when (:class:`Evidence`,
RFC 8785 canonical JSON). The modules below carry it:

- :mod:`~securemail.evidence.message` — the receipt message back to the sending gateway
  (text, the ESS signed receipt, the JSON), built and strictly read back;
- :mod:`~securemail.evidence.mdn` — the RFC 8098 disposition notification to the sender;
- :mod:`~securemail.evidence.bundle` — the folder an auditor verifies with ``openssl``.

Their entry points are re-exported here. All are pure (no clock; no I/O but the bundle's
folder). Every refusal of received or stored bytes raises the one error below:

    EvidenceError(SecureMailError[EvidenceReason])
      reason: EvidenceReason   e.g. EvidenceReason.TOO_LARGE -> "receipt-too-large"
      detail: str              for the operator's log; never message content

Security: :meth:`Evidence.from_json` reads bytes from another organisation. It caps the
size before parsing, takes exactly the known keys with their types and lengths, and accepts
only the canonical encoding, so one set of facts has exactly one byte form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import rfc8785

from securemail.errors import SecureMailError

MAX_EVIDENCE_BYTES = 8 * 1024
_VERSION = 1
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_IDENTIFIER = re.compile(r"(?:[0-9a-f]{2}){1,128}")  # RFC 2634 §2.7: 1..128 octets, in hex
_NAME = re.compile(r"[!-~](?: ?[!-~]){0,254}")  # visible ASCII, single inner spaces
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z")  # RFC 3339, UTC
_MAX_MESSAGE_ID = 998  # RFC 5322 §2.1.1 line limit
_MAX_ADDRESS = 320


class EvidenceReason(StrEnum):
    """Why a receipt message, evidence record or bundle was refused."""

    MALFORMED = "receipt-malformed"
    TOO_LARGE = "receipt-too-large"
    WRONG_KIND = "receipt-wrong-kind"
    EVIDENCE_MALFORMED = "evidence-malformed"
    BUNDLE_NOT_EMPTY = "bundle-not-empty"


class EvidenceError(SecureMailError[EvidenceReason]):
    """A refused receipt, evidence record or bundle: a stable reason code plus a detail."""


@dataclass(frozen=True)
class Evidence:
    """What the receiving gateway states it did for one recipient of one message."""

    original_message_id: str | None
    content_digest: str  # "sha256:<hex>" of the signed content (the original message bytes)
    content_identifier: str  # hex of the ESS signedContentIdentifier
    recipient: str
    delivered_at: datetime  # UTC
    receiving_org: str  # the receiving organisation's org_id
    receiving_gateway: str  # the receiving node's name

    def __post_init__(self) -> None:
        mid = self.original_message_id
        if mid is not None and not (0 < len(mid) <= _MAX_MESSAGE_ID and mid.isprintable()):
            raise ValueError("original_message_id must be printable text on one line")
        if not _DIGEST.fullmatch(self.content_digest):
            raise ValueError("content_digest must be 'sha256:' and 64 lower-case hex digits")
        if not _IDENTIFIER.fullmatch(self.content_identifier):
            raise ValueError("content_identifier must be 1..128 octets in lower-case hex")
        if "@" not in self.recipient or not _is_token(self.recipient, _MAX_ADDRESS):
            raise ValueError("recipient must be an address without spaces or controls")
        if self.delivered_at.utcoffset() != timedelta(0):
            raise ValueError("delivered_at must be a UTC datetime")
        for name in ("receiving_org", "receiving_gateway"):
            if not _NAME.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be 1..255 characters of visible ASCII")

    def to_json(self) -> bytes:
        """The record as RFC 8785 canonical JSON (UTF-8)."""
        return bytes(rfc8785.dumps(self._fields()))

    def _fields(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "original_message_id": self.original_message_id,
            "content_digest": self.content_digest,
            "content_identifier": self.content_identifier,
            "recipient": self.recipient,
            "delivered_at": rfc3339(self.delivered_at),
            "receiving_org": self.receiving_org,
            "receiving_gateway": self.receiving_gateway,
        }

    @classmethod
    def from_json(cls, data: bytes) -> Evidence:
        """Read a record written by :meth:`to_json`; anything else is an :class:`EvidenceError`."""
        if len(data) > MAX_EVIDENCE_BYTES:
            raise EvidenceError(EvidenceReason.TOO_LARGE, f"evidence of {len(data)} bytes")
        try:
            value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
            evidence = cls(**_arguments(value))
        except (ValueError, TypeError, RecursionError) as exc:
            raise EvidenceError(EvidenceReason.EVIDENCE_MALFORMED, str(exc)[:200]) from None
        if evidence.to_json() != data:
            raise EvidenceError(EvidenceReason.EVIDENCE_MALFORMED, "not RFC 8785 canonical")
        return evidence


def _arguments(value: object) -> dict[str, Any]:
    """The constructor arguments in ``value``: exactly the known keys, each of its type."""
    keys = set(Evidence.__dataclass_fields__) | {"version"}
    if not isinstance(value, dict) or set(value) != keys:
        raise ValueError("evidence must be an object with exactly the known keys")
    version = value.pop("version")
    if type(version) is not int or version != _VERSION:  # a JSON true is no version
        raise ValueError(f"evidence version must be {_VERSION}")
    mid = value["original_message_id"]
    if mid is not None and not isinstance(mid, str):
        raise ValueError("original_message_id must be a string or null")
    others = {k: v for k, v in value.items() if k != "original_message_id"}
    if not all(isinstance(v, str) for v in others.values()):
        raise ValueError("evidence fields must be strings")
    if not _TIME.fullmatch(value["delivered_at"]):
        raise ValueError("delivered_at must be an RFC 3339 UTC time ending in Z")
    value["delivered_at"] = datetime.fromisoformat(value["delivered_at"][:-1]).replace(tzinfo=UTC)
    return value


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when there are any."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _is_token(text: str, limit: int) -> bool:
    """Non-empty, at most ``limit`` characters, no white space and no control characters."""
    return 0 < len(text) <= limit and all(c.isprintable() and not c.isspace() for c in text)


# The entry points, re-exported last: their modules import the record and error above.
from securemail.evidence.bundle import write_bundle  # noqa: E402
from securemail.evidence.mdn import mdn  # noqa: E402
from securemail.evidence.message import (  # noqa: E402
    RECEIPT_KIND,
    is_receipt_message,
    read_receipt_message,
    receipt_message,
)

__all__ = [
    "MAX_EVIDENCE_BYTES",
    "RECEIPT_KIND",
    "Evidence",
    "EvidenceError",
    "EvidenceReason",
    "is_receipt_message",
    "mdn",
    "read_receipt_message",
    "receipt_message",
    "rfc3339",
    "write_bundle",
]
