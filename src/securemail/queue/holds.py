"""Mail held because its organisation's decryption key is not installed (``key-unavailable``).

An inbound entry for one of the node's own organisations whose key is missing (a rebuilt
gateway before ``keys restore``, a next key published before ``install-next``) is neither
quarantined nor bounced: the inbound worker holds it here, and once the key is installed,
or the hold limit has passed, it is released to be tried again. Every method is one
transaction and none reads the clock.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Protocol

from sqlalchemy import select, update

from securemail.config.reasons import HoldReason
from securemail.queue.model import Entry, State
from securemail.queue.schema import log_event, messages
from securemail.queue.transactions import Transactions

KEY_UNAVAILABLE = HoldReason.KEY_UNAVAILABLE.value


class KeyHolds(Protocol):
    """What the inbound worker and the key watch use; see :class:`KeyHoldRows`."""

    def hold_for_key(
        self, entry_id: str, detail: str, now: datetime, *, holder: str | None = None
    ) -> Entry: ...

    def release_for_key(
        self, org_id: str, now: datetime, *, arrived_before: datetime | None = None
    ) -> int: ...

    def held_for_key(self) -> dict[str, int]: ...


class KeyHoldRows(Transactions):
    """Holding and releasing mail that waits for a key."""

    def hold_for_key(
        self, entry_id: str, detail: str, now: datetime, *, holder: str | None = None
    ) -> Entry:
        """An entry in hand (ACTIVE) is held until its key is installed (fenced by
        ``holder`` as :meth:`securemail.queue.QueueStore.record` is)."""
        changes = {
            "state": State.HELD,
            "next_attempt_at": None,
            "reason": KEY_UNAVAILABLE,
            "lease_until": None,
        }
        return self._move(
            entry_id,
            {State.ACTIVE},
            "held",
            now,
            changes,
            reason=KEY_UNAVAILABLE,
            detail=detail,
            holder=holder,
        )

    def release_for_key(
        self, org_id: str, now: datetime, *, arrived_before: datetime | None = None
    ) -> int:
        """The organisation's entries held for a key become due now; with
        ``arrived_before``, only those that arrived before it (their hold limit passed)."""
        held = (
            (messages.c.state == State.HELD)
            & (messages.c.reason == KEY_UNAVAILABLE)
            & (messages.c.org_id == org_id)
        )
        if arrived_before is not None:
            held &= messages.c.created_at < arrived_before
        why = "its key is installed" if arrived_before is None else "its hold limit passed"
        with self._write("release_for_key") as conn:
            ids = builtins.list(conn.scalars(select(messages.c.id).where(held).with_for_update()))
            if ids:
                conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(ids))
                    .values(state=State.DEFERRED, next_attempt_at=now, updated_at=now)
                )
            for entry_id in ids:
                log_event(conn, entry_id, "released", now, reason=KEY_UNAVAILABLE, detail=why)
        return len(ids)

    def held_for_key(self) -> dict[str, int]:
        """How many entries each organisation has held for a key."""
        held = (messages.c.state == State.HELD) & (messages.c.reason == KEY_UNAVAILABLE)
        with self._read("held_for_key") as conn:
            rows = conn.execute(select(messages.c.org_id).where(held)).all()
        counts: dict[str, int] = {}
        for row in rows:
            counts[row[0]] = counts.get(row[0], 0) + 1
        return counts
