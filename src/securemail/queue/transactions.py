"""The queue's transactions: what every part of the store shares (one engine, one retry
policy, database failures as QueueError)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, update

from securemail import logbook
from securemail.queue import eventlog
from securemail.queue.model import Entry, QueueError, QueueReason, State
from securemail.queue.retry import RetryPolicy
from securemail.queue.schema import grouped_events, lock_entry, log_event, messages, one_entry
from securemail.storage.engine import transaction
from securemail.storage.errors import StorageError, StorageReason


class Transactions:
    """The engine and retry policy the store's parts share; each public method of a part is
    one ``_write`` or ``_read`` transaction."""

    def __init__(self, engine: Engine, retry: RetryPolicy) -> None:
        self._engine = engine
        self._retry = retry
        self._observers: list[Callable[[Sequence[logbook.QueueLine]], None]] = []

    def observe(self, observer: Callable[[Sequence[logbook.QueueLine]], None]) -> None:
        """Call ``observer`` with each write transaction's events once it committed (the
        lines the operations log writes; metrics count them)."""
        self._observers.append(observer)

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
        """One write transaction; its events are written together at its end and reach the
        operations log after the commit."""
        with as_queue_error():
            wanted = logbook.wanted() or bool(self._observers)
            with (
                transaction(self._engine, action, write=True) as conn,
                eventlog.collecting(conn, messages, wanted) as lines,
                grouped_events(conn),
            ):
                yield conn
            if lines:
                logbook.queue_events(lines)
                for observer in self._observers:
                    observer(lines)

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
