"""The durable message queue every service meets at (Postfix's queue manager, in SQL).

Receive services ``enqueue`` (the SMTP 250 follows the commit); workers ``claim`` due
entries, try them and ``record`` per-recipient outcomes; operators hold, release, retry,
delete and purge. Recipients relayed under a receipt-requesting signature await a receipt
(``accept_receipt``) until their window ends (``receipts_due``, ``expire_receipt``). One
SQLite file for a single node, or one PostgreSQL database shared by several.

    QueueError(reason: QueueReason)   "queue-unavailable", "queue-unsafe-settings",
                                      "queue-entry-not-found", "queue-bad-state"
"""

from securemail.queue.model import (
    Attempt,
    Direction,
    Disposition,
    Entry,
    Event,
    NewMessage,
    NewSignature,
    QueueError,
    QueueReason,
    ReceiptOutcome,
    ReceiptRecord,
    ReceiptState,
    ReceiptTaken,
    Recipient,
    Reservation,
    SentSignature,
    State,
)
from securemail.queue.retry import RetryPolicy
from securemail.queue.store import QueueStore

__all__ = [
    "Attempt",
    "Direction",
    "Disposition",
    "Entry",
    "Event",
    "NewMessage",
    "NewSignature",
    "QueueError",
    "QueueReason",
    "QueueStore",
    "ReceiptOutcome",
    "ReceiptRecord",
    "ReceiptState",
    "ReceiptTaken",
    "Recipient",
    "Reservation",
    "RetryPolicy",
    "SentSignature",
    "State",
]
