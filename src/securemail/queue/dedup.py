"""De-duplication: the idempotency keys of what the inbound worker delivered.

Theory of operation. Before delivering, the worker ``reserve``s each recipient's key for
its entry: an INSERT into ``delivery_keys``, whose primary key is the key, so one
reservation per key can exist in the whole database, whichever process or node asks. The
attempt's record turns the entry's reserved keys it delivered into delivered ones and
drops the rest (see :meth:`securemail.queue.manager.ManagerRows.record`). A reservation
whose entry is no longer ACTIVE under a live lease (it crashed, was recovered, deferred)
is taken over by the next copy. Receipts ride the record's transaction, so they are
issued once per key as well.

What this cannot close: a store that took the message and then lost the connection before
we recorded it (or a process killed in between) gets it again on the next attempt. A
Maildir store names the file after the key and keeps one; an SMTP/LMTP store sees it
twice in that window (milliseconds per delivery).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, delete, select, update

from securemail.queue.model import Reservation, State
from securemail.queue.schema import delivery_keys, messages
from securemail.queue.transactions import Transactions
from securemail.storage.dialect import insert_new


class Deduplication(Protocol):
    """Idempotency keys: a message delivered under a key is not delivered again.

    Contract:

    - a key (1 to 512 characters) names one message's content for one recipient;
    - ``reserve`` gives a key to one entry at a time, in every process and node sharing
      the database (a unique key, not a lock in memory): RESERVED to the entry that may
      deliver, DELIVERED once a delivery under it was recorded, BUSY while another live
      entry holds it;
    - a delivery is recorded under a key at most once: a second record of the same key by
      another entry fails and writes nothing (QueueError BAD_STATE);
    - ``remember`` stores a key as delivered at most once: True the first time, False
      after; ``seen`` tells whether one was delivered; ``forget_before`` drops old delivered
      keys (a copy re-sent after that is delivered again).
    """

    def reserve(
        self, keys: Sequence[str], entry_id: str, now: datetime
    ) -> dict[str, Reservation]: ...

    def seen(self, key: str) -> bool: ...

    def remember(self, key: str, now: datetime) -> bool: ...

    def forget_before(self, when: datetime) -> int: ...


class DeduplicationRows(Transactions):
    """Idempotency keys in SQL. See :class:`Deduplication`."""

    def reserve(self, keys: Sequence[str], entry_id: str, now: datetime) -> dict[str, Reservation]:
        """Reserve each of ``keys`` for ``entry_id``; what each one is now (see the module)."""
        for key in keys:
            _check(key)
        with self._write("reserve") as conn:
            return {key: _reserve(conn, key, entry_id, now) for key in keys}

    def seen(self, key: str) -> bool:
        """Whether a delivery was recorded under an idempotency key."""
        where = (delivery_keys.c.key == key) & delivery_keys.c.delivered.is_(True)
        with self._read("seen") as conn:
            found = conn.scalar(select(delivery_keys.c.key).where(where))
        return found is not None

    def remember(self, key: str, now: datetime) -> bool:
        """Store an idempotency key as delivered; False if it was stored before."""
        _check(key)
        with self._write("remember") as conn:
            insert = insert_new(conn, delivery_keys, key=key, stored_at=now, delivered=True)
            stored = conn.execute(insert.returning(delivery_keys.c.key)).first()
        return stored is not None

    def forget_before(self, when: datetime) -> int:
        """Drop delivered idempotency keys stored before ``when``; how many."""
        old = (delivery_keys.c.stored_at < when) & delivery_keys.c.delivered.is_(True)
        with self._write("forget_before") as conn:
            return conn.execute(delete(delivery_keys).where(old)).rowcount


def _check(key: str) -> None:
    if not 0 < len(key) <= 512:
        raise ValueError("an idempotency key has 1 to 512 characters")


def _reserve(conn: Connection, key: str, entry_id: str, now: datetime) -> Reservation:
    new = insert_new(
        conn, delivery_keys, key=key, stored_at=now, entry_id=entry_id, delivered=False
    )
    if conn.execute(new.returning(delivery_keys.c.key)).first() is not None:
        return Reservation.RESERVED
    row = conn.execute(
        select(delivery_keys).where(delivery_keys.c.key == key).with_for_update()
    ).one()
    if row.delivered:
        return Reservation.DELIVERED
    if row.entry_id != entry_id and _live(conn, row.entry_id, now):
        return Reservation.BUSY
    taken = update(delivery_keys).where(delivery_keys.c.key == key)
    conn.execute(taken.values(entry_id=entry_id, stored_at=now))
    return Reservation.RESERVED


def _live(conn: Connection, entry_id: str | None, now: datetime) -> bool:
    """Whether ``entry_id`` is being tried under a lease that holds."""
    if entry_id is None:
        return False
    row = conn.execute(
        select(messages.c.state, messages.c.lease_until).where(messages.c.id == entry_id)
    ).first()
    if row is None or row.state != State.ACTIVE:
        return False
    return row.lease_until is None or row.lease_until >= now


def record_delivered(conn: Connection, keys: Sequence[str], entry_id: str, now: datetime) -> bool:
    """Mark ``keys`` delivered by ``entry_id`` in its attempt's transaction; False (and the
    caller writes nothing) if one was recorded delivered by another entry. Then drop the
    entry's reservations it did not deliver under."""
    for key in keys:
        mine = (
            (delivery_keys.c.key == key)
            & delivery_keys.c.delivered.is_(False)
            & ((delivery_keys.c.entry_id == entry_id) | delivery_keys.c.entry_id.is_(None))
        )
        values = {"delivered": True, "stored_at": now, "entry_id": entry_id}
        if conn.execute(update(delivery_keys).where(mine).values(values)).rowcount:
            continue
        insert = insert_new(conn, delivery_keys, key=key, **values)
        if conn.execute(insert.returning(delivery_keys.c.key)).first() is None:
            return False
    unused = (delivery_keys.c.entry_id == entry_id) & delivery_keys.c.delivered.is_(False)
    conn.execute(delete(delivery_keys).where(unused))
    return True
