"""De-duplication: the idempotency keys of what the inbound worker delivered.

Theory of operation. Before delivering, the worker ``reserve``s each recipient's key for
its entry: an INSERT into ``delivery_keys``, whose primary key is the key, so one
reservation per key can exist in the whole database, whichever process or node asks. The
attempt's record turns the entry's reserved keys it delivered into delivered ones and
drops the rest (see :meth:`securemail.queue.manager.ManagerRows.record`). Only inbound
entries reserve (the inbound worker delivers): an outbound entry's record does not look
for reservations to drop, a statement less on every relayed message. A reservation
whose entry is no longer ACTIVE under a live lease (it crashed, was recovered, deferred)
is taken over by the next copy. Receipts ride the record's transaction, so they are
issued once per key as well.

FRESH: a reservation that INSERTed the key's row (none existed) tells the worker that no
store was ever handed the message under that key, so a store that looks for an earlier copy
(the Maildir's listing of new/ and cur/) may skip looking. That holds because a row goes
away only (a) in a record whose results say the delivery under it failed, and a store's
failure leaves nothing stored (the Target contract; the Maildir removes its link when it
cannot make it durable), or (b) by ``forget_before`` of a delivered key (a copy re-sent
after that is delivered again anyway). A crash, a deferred attempt (an exception, a record
that failed) and a lost lease keep the entry's rows: the next holder takes them over as
RESERVED, not FRESH.

A store that cannot tell a second copy (SMTP, LMTP) is guarded further: the moment it
answers 250, the worker marks the keys ``handed`` (delivered, by its entry) in a
transaction of their own, before anything else of the attempt. If the process dies after
that and before the attempt's record, whoever tries the entry next finds the key HANDED
(delivered by this very entry, whose recipient is still pending): it records the
recipient delivered, with the receipts that ride that record, and does not deliver again.

What this cannot close: a store that took the message and then lost the connection before
we heard its 250, or a process killed between the store's 250 and the ``handed`` commit (one
small transaction, about a millisecond on an idle PostgreSQL), gets it again on the next
attempt. A Maildir store names the file after the key and keeps one; an SMTP/LMTP store
sees it twice. No SMTP store can be asked whether it holds a message (docs/operations.md).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, bindparam, delete, select, update

from securemail.queue.model import Reservation, State
from securemail.queue.schema import delivery_keys, messages
from securemail.queue.transactions import Transactions
from securemail.storage.dialect import insert_ignoring
from securemail.storage.prepared import Prepared

# The statements of every delivery, prepared once (see securemail.queue.schema).
_KEY = delivery_keys.c.key == bindparam("b_key")
_LOCK_KEY = Prepared(select(delivery_keys).where(_KEY).with_for_update())
_TAKE_KEY = Prepared(update(delivery_keys).where(_KEY))
_MINE = delivery_keys.c.entry_id == bindparam("b_entry")
# The key reserved by the entry (or by no one), or handed to the store by it.
_DELIVERED_BY = Prepared(
    update(delivery_keys).where(
        _KEY
        & (
            (delivery_keys.c.delivered.is_(False) & (_MINE | delivery_keys.c.entry_id.is_(None)))
            | (delivery_keys.c.delivered.is_(True) & _MINE)
        )
    )
)
_DROP_UNUSED = Prepared(
    delete(delivery_keys).where(
        (delivery_keys.c.entry_id == bindparam("b_entry")) & delivery_keys.c.delivered.is_(False)
    )
)
_LEASE_OF = Prepared(
    select(messages.c.state, messages.c.lease_until).where(messages.c.id == bindparam("b_entry"))
)
# An entry's reserved keys the store took (``handed``).
_HANDED = Prepared(
    update(delivery_keys).where(
        delivery_keys.c.key.in_(bindparam("b_keys", expanding=True))
        & (delivery_keys.c.entry_id == bindparam("b_entry"))
        & delivery_keys.c.delivered.is_(False)
    )
)


@functools.cache
def _insert_key_statement(dialect_name: str) -> Prepared:
    return Prepared(insert_ignoring(dialect_name, delivery_keys, delivery_keys.c.key))


def _insert_key(conn: Connection, row: dict[str, object]) -> bool:
    """INSERT the key's row unless the key exists; whether it was inserted."""
    return _insert_key_statement(conn.dialect.name).first(conn, row) is not None


class Deduplication(Protocol):
    """Idempotency keys: a message delivered under a key is not delivered again.

    Contract:

    - a key (1 to 512 characters) names one message's content for one recipient;
    - ``reserve`` gives a key to one inbound entry at a time (an outbound entry's record
      never releases reservations), in every process and node sharing
      the database (a unique key, not a lock in memory): RESERVED to the entry that may
      deliver (FRESH when no one held it before), DELIVERED once a delivery under it was
      recorded, BUSY while another live
      entry holds it, HANDED to the entry that handed it to the store in an attempt whose
      record never committed (see ``handed``);
    - ``handed`` marks an entry's reserved keys delivered the moment the store said 250,
      before the attempt's record (which then finds them its own); how many it marked;
    - a delivery is recorded under a key at most once: a second record of the same key by
      another entry fails and writes nothing (QueueError BAD_STATE);
    - ``remember`` stores a key as delivered at most once: True the first time, False
      after; ``seen`` tells whether one was delivered; ``forget_before`` drops old delivered
      keys (a copy re-sent after that is delivered again).
    """

    def reserve(
        self, keys: Sequence[str], entry_id: str, now: datetime
    ) -> dict[str, Reservation]: ...

    def reserve_many(
        self, requests: Sequence[tuple[Sequence[str], str]], now: datetime
    ) -> list[dict[str, Reservation]]: ...

    def handed(self, keys: Sequence[str], entry_id: str, now: datetime) -> int: ...

    def seen(self, key: str) -> bool: ...

    def remember(self, key: str, now: datetime) -> bool: ...

    def forget_before(self, when: datetime) -> int: ...


class DeduplicationRows(Transactions):
    """Idempotency keys in SQL. See :class:`Deduplication`."""

    def reserve(self, keys: Sequence[str], entry_id: str, now: datetime) -> dict[str, Reservation]:
        """Reserve each of ``keys`` for ``entry_id``; what each one is now (see the module)."""
        for key in keys:
            check_key(key)
        with self._write("reserve") as conn:
            return {key: _reserve(conn, key, entry_id, now) for key in keys}

    def reserve_many(
        self, requests: Sequence[tuple[Sequence[str], str]], now: datetime
    ) -> list[dict[str, Reservation]]:
        """:meth:`reserve` for several entries (``(keys, entry_id)`` each) in one
        transaction (group commit), in order: all or none."""
        for keys, _ in requests:
            for key in keys:
                check_key(key)
        with self._write("reserve") as conn:
            return [
                {key: _reserve(conn, key, entry_id, now) for key in keys}
                for keys, entry_id in requests
            ]

    def handed(self, keys: Sequence[str], entry_id: str, now: datetime) -> int:
        """Mark ``keys``, reserved by ``entry_id``, delivered: the store answered 250 for
        them (see the module); how many were marked."""
        if not keys:
            return 0
        marked = {"b_keys": list(keys), "b_entry": entry_id, "delivered": True, "stored_at": now}
        with self._write("handed") as conn:
            return _HANDED.run(conn, marked)

    def seen(self, key: str) -> bool:
        """Whether a delivery was recorded under an idempotency key."""
        where = (delivery_keys.c.key == key) & delivery_keys.c.delivered.is_(True)
        with self._read("seen") as conn:
            found = conn.scalar(select(delivery_keys.c.key).where(where))
        return found is not None

    def remember(self, key: str, now: datetime) -> bool:
        """Store an idempotency key as delivered; False if it was stored before."""
        check_key(key)
        with self._write("remember") as conn:
            return _insert_key(conn, {"key": key, "stored_at": now, "delivered": True})

    def forget_before(self, when: datetime) -> int:
        """Drop delivered idempotency keys stored before ``when``; how many."""
        old = (delivery_keys.c.stored_at < when) & delivery_keys.c.delivered.is_(True)
        with self._write("forget_before") as conn:
            return conn.execute(delete(delivery_keys).where(old)).rowcount


def check_key(key: str) -> None:
    """ValueError unless ``key`` is a valid idempotency key (1 to 512 characters)."""
    if not 0 < len(key) <= 512:
        raise ValueError("an idempotency key has 1 to 512 characters")


def _reserve(conn: Connection, key: str, entry_id: str, now: datetime) -> Reservation:
    if _insert_key(conn, {"key": key, "stored_at": now, "entry_id": entry_id, "delivered": False}):
        return Reservation.FRESH
    row = _LOCK_KEY.one(conn, {"b_key": key})
    if row.delivered:
        return Reservation.HANDED if row.entry_id == entry_id else Reservation.DELIVERED
    if row.entry_id != entry_id and _live(conn, row.entry_id, now):
        return Reservation.BUSY
    _TAKE_KEY.run(conn, {"b_key": key, "entry_id": entry_id, "stored_at": now})
    return Reservation.RESERVED


def _live(conn: Connection, entry_id: str | None, now: datetime) -> bool:
    """Whether ``entry_id`` is being tried under a lease that holds."""
    if entry_id is None:
        return False
    row = _LEASE_OF.first(conn, {"b_entry": entry_id})
    if row is None or row.state != State.ACTIVE:
        return False
    return row.lease_until is None or row.lease_until >= now


def record_delivered(
    conn: Connection, keys: Sequence[str], entry_id: str, now: datetime, *, release: bool = True
) -> bool:
    """Mark ``keys`` delivered by ``entry_id`` in its attempt's transaction; False (and the
    caller writes nothing) if one was recorded delivered by another entry. Then, with
    ``release`` (an attempt whose results say what each delivery did), drop the entry's
    reservations it did not deliver under; without it (a whole attempt deferred, whose
    deliveries may have stored something before it failed) keep them, so the next
    holder takes them over (RESERVED, not FRESH) and the store looks for a copy."""
    for key in keys:
        values = {"delivered": True, "stored_at": now, "entry_id": entry_id}
        mine = values | {"b_key": key, "b_entry": entry_id}
        if _DELIVERED_BY.run(conn, mine):
            continue
        if not _insert_key(conn, values | {"key": key}):
            return False
    if release:
        _DROP_UNUSED.run(conn, {"b_entry": entry_id})
    return True
