"""The durable queue in one SQLite file or one PostgreSQL database: its four parts together.

Theory of operation. Every public method is one database transaction, so an entry is
always whole: its row, body, recipients and the event that explains its state change
commit together or not at all. The store never reads the clock: every change takes
``now``. The parts, each behind the Protocol the roles depend on:

    manager.QueueManager      admit, claim, complete, defer (listeners and workers)
    steering.Steering         look, hold, release, retry, delete, purge (operators)
    receipts.ReceiptTracking  signatures sent, receipts taken, windows expired
    dedup.Deduplication       idempotency keys of what was delivered
    upstream.UpstreamRows     an upstream queue's backlog per member
    holds.KeyHoldRows         mail held until its organisation's key is installed

Security: bodies, envelopes and client names are untrusted values: stored only through
bound parameters and blobs, never pickled, never interpolated into SQL. Errors and logs
never carry a body or an address list (SQLAlchemy's parameters are hidden); a database
failure is a QueueError UNAVAILABLE, which callers turn into a temporary reply, never a 250.
"""

from __future__ import annotations

from securemail.queue.dedup import DeduplicationRows
from securemail.queue.holds import KeyHoldRows
from securemail.queue.manager import LIVE_STATES, ManagerRows
from securemail.queue.receipts import TrackingRows
from securemail.queue.retry import RetryPolicy
from securemail.queue.steering import SteeringRows
from securemail.queue.transactions import as_queue_error
from securemail.queue.upstream import UpstreamRows
from securemail.storage.engine import connect, upgrade

DEFAULT_RETRY = RetryPolicy()

__all__ = ["DEFAULT_RETRY", "LIVE_STATES", "QueueStore"]


class QueueStore(
    ManagerRows, SteeringRows, TrackingRows, DeduplicationRows, UpstreamRows, KeyHoldRows
):
    """The whole queue; safe to share between threads. Roles hold it as the Protocols of
    the parts they use (see :class:`securemail.queue.access.QueueAccess`)."""

    @classmethod
    def open(cls, url: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> QueueStore:
        """Connect to ``url``, check durability, migrate to the newest schema."""
        with as_queue_error():
            engine = connect(url)
            try:
                upgrade(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine, retry)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> QueueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
