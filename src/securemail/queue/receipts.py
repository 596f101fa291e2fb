"""Tracking and receipts: what an attempt signed, and each recipient's receipt, settled once.

The row-level work is :mod:`securemail.queue.tracking`; this is its face for the roles.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from securemail.queue import tracking
from securemail.queue.model import (
    NewMessage,
    ReceiptOutcome,
    ReceiptRecord,
    ReceiptState,
    ReceiptTaken,
    SentSignature,
)
from securemail.queue.schema import follow_up, messages, recipients, signatures
from securemail.queue.transactions import Transactions

_ALL = 10_000  # one Message-ID's recipients: a bound, not a page


class ReceiptTracking(Protocol):
    """The sender's side of receipts: signatures sent, receipts taken, windows expired.

    Contract:

    - every method is one database transaction; none reads the clock;
    - a recipient awaiting a receipt ends exactly once, RECEIPTED or EXPIRED, whichever
      commits first, in any process or node sharing the database (the recipient's row is
      locked for the change); the other finds the state changed and does nothing;
    - the notice that goes with an outcome (``enqueue``) commits with it or not at all, and
      only when this call made the change;
    - stored signatures and receipts are evidence: they outlive the entry (see
      :meth:`securemail.queue.steering.Steering.purge`).
    """

    def signature(self, content_identifier: str) -> SentSignature | None: ...

    def signatures_for(self, entry_id: str) -> list[SentSignature]: ...

    def accept_receipt(
        self,
        content_identifier: str,
        recipient: str,
        receipt: bytes,
        evidence: str,
        now: datetime,
        *,
        enqueue: Sequence[NewMessage] = (),
    ) -> ReceiptOutcome: ...

    def accept_receipts(
        self, taken: Sequence[ReceiptTaken], now: datetime
    ) -> list[ReceiptOutcome]: ...

    def receipts_due(self, now: datetime, limit: int = 200) -> list[ReceiptRecord]: ...

    def expire_receipt(
        self, entry_id: str, recipient: str, now: datetime, *, enqueue: Sequence[NewMessage] = ()
    ) -> bool: ...

    def receipt_records(self, message_id: str) -> list[ReceiptRecord]: ...


class TrackingRows(Transactions):
    """Receipt tracking in SQL. See :class:`ReceiptTracking`."""

    def signature(self, content_identifier: str) -> SentSignature | None:
        """The signature with this ESS contentIdentifier (hex, any case), or None."""
        with self._read("signature") as conn:
            return tracking.find_signature(conn, content_identifier)

    def signatures_for(self, entry_id: str) -> list[SentSignature]:
        """The signatures an entry's attempts made, oldest first (kept after a delete)."""
        with self._read("signatures_for") as conn:
            return tracking.select_signatures(conn, signatures.c.entry_id == entry_id)

    def accept_receipt(
        self,
        content_identifier: str,
        recipient: str,
        receipt: bytes,
        evidence: str,
        now: datetime,
        *,
        enqueue: Sequence[NewMessage] = (),
    ) -> ReceiptOutcome:
        """Settle one recipient's receipt: ACCEPTED once, then DUPLICATE; LATE or UNKNOWN.

        The caller has verified ``receipt`` (DER ESS signed receipt) against the signature;
        see :class:`ReceiptOutcome` and :mod:`securemail.queue.tracking` for the states.
        ``enqueue`` (the notice to the sender) is queued in the same commit, only if ACCEPTED:
        a crash cannot leave a receipted recipient whose sender is never told.
        """
        taken = ReceiptTaken(content_identifier, recipient, receipt, evidence, tuple(enqueue))
        return self.accept_receipts([taken], now)[0]

    def accept_receipts(self, taken: Sequence[ReceiptTaken], now: datetime) -> list[ReceiptOutcome]:
        """:meth:`accept_receipt` for several receipts in one transaction (group commit),
        in order, each answered as if alone (a second receipt for the same recipient finds
        the first's change: DUPLICATE): all or none."""
        with self._write("accept_receipt") as conn:
            return [_accept(conn, one, now) for one in taken]

    def receipts_due(self, now: datetime, limit: int = 200) -> list[ReceiptRecord]:
        """Recipients still AWAITING a receipt whose deadline has come, earliest first."""
        where = (recipients.c.receipt_state == ReceiptState.AWAITING) & (
            recipients.c.receipt_deadline <= now
        )
        with self._read("receipts_due") as conn:
            return tracking.select_records(conn, where, limit, by_deadline=True)

    def expire_receipt(
        self, entry_id: str, recipient: str, now: datetime, *, enqueue: Sequence[NewMessage] = ()
    ) -> bool:
        """AWAITING → EXPIRED, queueing ``enqueue`` (the failure notice) in the same commit.

        False, and nothing queued, if the recipient no longer awaits a receipt (one won).
        """
        with self._write("expire_receipt") as conn:
            expired = tracking.expire(conn, entry_id, recipient, now)
            if expired:
                follow_up(conn, entry_id, enqueue, now)
            return expired

    def receipt_records(self, message_id: str) -> list[ReceiptRecord]:
        """Every recipient of the entries with this Message-ID, in arrival order."""
        with self._read("receipt_records") as conn:
            return tracking.select_records(conn, messages.c.message_id == message_id, _ALL)


def _accept(conn: Connection, taken: ReceiptTaken, now: datetime) -> ReceiptOutcome:
    signature = tracking.find_signature(conn, taken.content_identifier)
    if signature is None:
        return ReceiptOutcome.UNKNOWN
    outcome = tracking.accept(
        conn, signature, taken.recipient, receipt=taken.receipt, evidence=taken.evidence, now=now
    )
    if outcome is ReceiptOutcome.ACCEPTED:
        follow_up(conn, signature.entry_id, taken.enqueue, now)
    return outcome
