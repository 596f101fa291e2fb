"""The queue's transactions: what every part of the store shares (one engine, one retry
policy, database failures as QueueError)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, update

from securemail.queue.model import Entry, QueueError, QueueReason, State
from securemail.queue.retry import RetryPolicy
from securemail.queue.schema import lock_entry, log_event, messages, one_entry
from securemail.storage.engine import transaction
from securemail.storage.errors import StorageError, StorageReason


class Transactions:
    """The engine and retry policy the store's parts share; each public method of a part is
    one ``_write`` or ``_read`` transaction."""

    def __init__(self, engine: Engine, retry: RetryPolicy) -> None:
        self._engine = engine
        self._retry = retry

    def _move(
        self,
        entry_id: str,
        allowed: Iterable[State],
        event: str,
        now: datetime,
        changes: dict[str, Any],
        *,
        reason: str = "",
        detail: str = "",
        holder: str | None = None,
    ) -> Entry:
        """A checked change of one entry and the event that explains it, in one transaction
        (fenced by ``holder``: see :func:`securemail.queue.schema.lock_entry`)."""
        with self._write(event) as conn:
            entry = lock_entry(conn, entry_id, allowed, holder=holder)
            values = {"updated_at": now} | changes
            conn.execute(update(messages).where(messages.c.id == entry_id).values(values))
            detail = detail or f"was {entry.state}"
            log_event(conn, entry_id, event, now, reason=reason, detail=detail)
            return one_entry(conn, entry_id)

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        with as_queue_error(), transaction(self._engine, action, write=True) as conn:
            yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with as_queue_error(), transaction(self._engine, action, write=False) as conn:
            yield conn


_REASONS = {
    StorageReason.UNAVAILABLE: QueueReason.UNAVAILABLE,
    StorageReason.UNSAFE_SETTINGS: QueueReason.UNSAFE_SETTINGS,
}


@contextmanager
def as_queue_error() -> Iterator[None]:
    """The database's failures as the queue's: callers answer QueueError UNAVAILABLE with 451."""
    try:
        yield
    except StorageError as error:
        raise QueueError(_REASONS[error.reason], error.detail) from error
