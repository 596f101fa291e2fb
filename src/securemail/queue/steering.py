"""Operator steering: look into the queue, hold, release, retry, delete and purge entries.

The CLI's ``queue`` commands, the console and the API reach the queue only through
:class:`Steering` (by way of :mod:`securemail.operations`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from sqlalchemy import ColumnElement, delete, func, select, true

from securemail.queue.model import (
    FINAL_STATES,
    Direction,
    Entry,
    Event,
    QueueError,
    QueueReason,
    ReceiptState,
    State,
)
from securemail.queue.schema import (
    ORDER,
    events,
    head,
    log_event,
    messages,
    recipients,
    select_entries,
    signatures,
)
from securemail.queue.transactions import Transactions

_ALL = 10_000  # one Message-ID's entries: a bound, not a page
_EVIDENCE = recipients.c.receipt_state.in_([ReceiptState.RECEIPTED, ReceiptState.AWAITING])


class Steering(Protocol):
    """What an operator may see and change in the queue.

    Contract:

    - every method is one database transaction; none reads the clock;
    - a change (hold, release, retry, delete) applies only to an entry that is not being
      tried: an ACTIVE entry is QueueError BAD_STATE and stays as it was; an unknown one is
      NOT_FOUND (``delete`` answers False instead);
    - every change adds the event that explains it to the entry's history, and the history
      outlives a delete;
    - ``purge`` removes only final entries, and keeps quarantine and receipt evidence
      unless told otherwise;
    - reads (``list``, ``get``, ``events``, ``counts``, ``body``) change nothing.
    """

    def durability(self) -> dict[str, str]: ...

    def counts(self) -> dict[State, int]: ...

    def depth(self) -> builtins.list[tuple[State, Direction, str, int]]: ...

    def receipt_counts(self) -> dict[ReceiptState, int]: ...

    def get(self, entry_id: str) -> Entry | None: ...

    def body(self, entry_id: str) -> bytes: ...

    def events(self, entry_id: str) -> builtins.list[Event]: ...

    def entries_by_message_id(self, message_id: str) -> builtins.list[Entry]: ...

    def list(
        self,
        states: Iterable[State] | None = None,
        direction: Direction | None = None,
        limit: int = 200,
        *,
        reason: str | None = None,
        text: str | None = None,
        changed_since: datetime | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> builtins.list[Entry]: ...

    def total(
        self,
        states: Iterable[State] | None = None,
        direction: Direction | None = None,
        *,
        reason: str | None = None,
        text: str | None = None,
        changed_since: datetime | None = None,
    ) -> int: ...

    def hold(self, entry_id: str, now: datetime) -> Entry: ...

    def release(self, entry_id: str, now: datetime) -> Entry: ...

    def retry(self, entry_id: str, now: datetime) -> Entry: ...

    def delete(self, entry_id: str, now: datetime) -> bool: ...

    def purge(
        self,
        states: Iterable[State],
        older_than: datetime,
        *,
        include_evidence: bool = False,
        ids: Iterable[str] | None = None,
    ) -> int: ...

    def recover(self, now: datetime, *, owner: str | None = None) -> int: ...


class SteeringRows(Transactions):
    """Operator steering in SQL. See :class:`Steering`."""

    def counts(self) -> dict[State, int]:
        """How many entries are in each state (every state present, zero included)."""
        query = select(messages.c.state, func.count()).group_by(messages.c.state)
        with self._read("counts") as conn:
            found = {State(state): count for state, count in conn.execute(query)}
        return {state: found.get(state, 0) for state in State}

    def depth(self) -> builtins.list[tuple[State, Direction, str, int]]:
        """How many entries there are by state, direction and reason code ("" for none)."""
        columns = (messages.c.state, messages.c.direction, messages.c.reason)
        with self._read("depth") as conn:
            rows = conn.execute(select(*columns, func.count()).group_by(*columns)).all()
        return [(State(s), Direction(d), reason or "", int(n)) for s, d, reason, n in rows]

    def receipt_counts(self) -> dict[ReceiptState, int]:
        """How many recipients there are in each receipt state other than NONE."""
        column = recipients.c.receipt_state
        query = select(column, func.count()).where(column != ReceiptState.NONE).group_by(column)
        with self._read("receipt_counts") as conn:
            return {ReceiptState(state): int(n) for state, n in conn.execute(query)}

    def events(self, entry_id: str) -> builtins.list[Event]:
        """An entry's history, oldest first (kept after an operator deleted the entry)."""
        query = select(events).where(events.c.entry_id == entry_id).order_by(events.c.id)
        with self._read("events") as conn:
            return [
                Event(r.entry_id, r.time, r.event, r.recipient, r.reason, r.detail)
                for r in conn.execute(query)
            ]

    def entries_by_message_id(self, message_id: str) -> builtins.list[Entry]:
        """The entries with this Message-ID (inbound and outbound), oldest first."""
        with self._read("entries_by_message_id") as conn:
            return select_entries(conn, messages.c.message_id == message_id, _ALL)

    def list(
        self,
        states: Iterable[State] | None = None,
        direction: Direction | None = None,
        limit: int = 200,
        *,
        reason: str | None = None,
        text: str | None = None,
        changed_since: datetime | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> builtins.list[Entry]:
        """Up to ``limit`` entries after skipping ``offset``, oldest first unless
        ``newest_first``, optionally of some states and one direction.

        ``reason`` matches the entry's or a recipient's reason code exactly; ``text`` is
        found (case-insensitively, as a literal) in the sender, the Message-ID or a
        recipient; ``changed_since`` keeps entries whose state changed at or after it.
        :meth:`total` counts what the same filter matches.
        """
        where = _listing(states, direction, reason, text, changed_since)
        order = [c.desc() for c in ORDER] if newest_first else list(ORDER)
        with self._read("list") as conn:
            chosen = select(messages.c.id).where(where).order_by(*order)
            ids = builtins.list(conn.scalars(chosen.limit(limit).offset(offset)))
            found = select_entries(conn, messages.c.id.in_(ids), len(ids)) if ids else []
        by_id = {e.id: e for e in found}
        return [by_id[i] for i in ids if i in by_id]

    def total(
        self,
        states: Iterable[State] | None = None,
        direction: Direction | None = None,
        *,
        reason: str | None = None,
        text: str | None = None,
        changed_since: datetime | None = None,
    ) -> int:
        """How many entries :meth:`list` with the same filter would give without a limit."""
        where = _listing(states, direction, reason, text, changed_since)
        with self._read("total") as conn:
            counted = conn.scalar(select(func.count()).select_from(messages).where(where))
        return int(counted or 0)

    def hold(self, entry_id: str, now: datetime) -> Entry:
        """Stop delivery attempts until released (not while an attempt is running)."""
        changes = {"state": State.HELD, "next_attempt_at": None}
        return self._move(entry_id, {State.INCOMING, State.DEFERRED}, "held", now, changes)

    def release(self, entry_id: str, now: datetime) -> Entry:
        """A held entry becomes due now."""
        changes = {"state": State.DEFERRED, "next_attempt_at": now}
        return self._move(entry_id, {State.HELD}, "released", now, changes)

    def retry(self, entry_id: str, now: datetime) -> Entry:
        """A deferred or held entry becomes due now."""
        changes = {"state": State.DEFERRED, "next_attempt_at": now}
        return self._move(entry_id, {State.DEFERRED, State.HELD}, "retry", now, changes)

    def delete(self, entry_id: str, now: datetime) -> bool:
        """Remove an entry that is not being tried; False if there was none. History stays."""
        with self._write("delete") as conn:
            row = conn.execute(head(entry_id).with_for_update()).first()
            if row is None:
                return False
            if row.state == State.ACTIVE:
                raise QueueError(QueueReason.BAD_STATE, f"{entry_id} is being delivered")
            conn.execute(delete(messages).where(messages.c.id == entry_id))
            log_event(conn, entry_id, "deleted", now, detail=f"was {row.state}")
        return True

    def purge(
        self,
        states: Iterable[State],
        older_than: datetime,
        *,
        include_evidence: bool = False,
        ids: Iterable[str] | None = None,
    ) -> int:
        """Delete final entries (history and signatures too) last changed before ``older_than``.

        Only DELIVERED and BOUNCED, and QUARANTINED when named: quarantine is evidence. So
        are receipts: entries with a recipient RECEIPTED or AWAITING stay unless
        ``include_evidence``. With ``ids``, only those entries (a bulk action's selection).
        """
        chosen = set(states)
        if not chosen <= FINAL_STATES:
            live = ", ".join(sorted(chosen - FINAL_STATES))
            raise QueueError(QueueReason.BAD_STATE, f"only final entries are purged, not {live}")
        if not chosen:
            return 0
        old = messages.c.state.in_(chosen) & (messages.c.updated_at < older_than)
        if not include_evidence:
            old = old & ~messages.c.id.in_(select(recipients.c.entry_id).where(_EVIDENCE))
        if ids is not None:
            old = old & messages.c.id.in_(builtins.list(ids))
        with self._write("purge") as conn:
            purged = select(messages.c.id).where(old)
            conn.execute(delete(events).where(events.c.entry_id.in_(purged)))
            conn.execute(delete(signatures).where(signatures.c.entry_id.in_(purged)))
            return conn.execute(delete(messages).where(old)).rowcount


def _listing(
    states: Iterable[State] | None,
    direction: Direction | None,
    reason: str | None,
    text: str | None,
    changed_since: datetime | None,
) -> ColumnElement[bool]:
    """The filter of :meth:`SteeringRows.list` and :meth:`SteeringRows.total`."""
    where: ColumnElement[bool] = true()
    if states is not None:
        where = where & messages.c.state.in_(set(states))
    if direction is not None:
        where = where & (messages.c.direction == direction)
    if reason is not None:
        by_recipient = select(recipients.c.entry_id).where(recipients.c.reason == reason)
        where = where & ((messages.c.reason == reason) | messages.c.id.in_(by_recipient))
    if text:
        where = where & _mentions(text)
    if changed_since is not None:
        where = where & (messages.c.updated_at >= changed_since)
    return where


def _mentions(text: str) -> ColumnElement[bool]:
    """Entries whose sender, Message-ID or a recipient contains ``text`` (no wildcards)."""
    needle = text.lower()
    named = select(recipients.c.entry_id).where(
        func.lower(recipients.c.address).contains(needle, autoescape=True)
    )
    return (
        func.lower(messages.c.mail_from).contains(needle, autoescape=True)
        | func.lower(messages.c.message_id).contains(needle, autoescape=True)
        | messages.c.id.in_(named)
    )
