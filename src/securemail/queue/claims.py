"""A worker's claim in SQL: due entries of a direction locked, moved to ACTIVE, returned.

Theory of operation. Due are INCOMING and DEFERRED entries whose time has come, and
ACTIVE entries whose holder's lease expired; they are taken lowest priority value first,
then oldest first, locked so that no other claim in any process or node takes them too
(PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite's claim runs in a ``BEGIN IMMEDIATE``
transaction, the database's one writer). On SQLite a claim is three statements: the look,
the move, the read of the entries. On PostgreSQL a worker's claim (with bodies) is one:
the look in a ``WITH``, the move an ``UPDATE … FROM`` it, ``RETURNING`` the entries with
their bodies and what each was before (a data-modifying CTE: one snapshot, all or none),
two round trips less per claim. Either way the recipients are read after.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from securemail.queue.model import Direction, Entry, State
from securemail.queue.schema import (
    CLAIM_ORDER,
    HEAD,
    ORDER,
    entries_of,
    log_event,
    messages,
    select_entries,
)
from securemail.storage.prepared import Prepared

_DUE = (
    select(messages.c.id, messages.c.state, messages.c.claimed_by)
    .where(messages.c.direction == bindparam("b_direction"))
    .where(
        (
            messages.c.state.in_([State.INCOMING, State.DEFERRED])
            & (messages.c.next_attempt_at <= bindparam("b_now"))
        )
        | ((messages.c.state == State.ACTIVE) & (messages.c.lease_until < bindparam("b_now")))
    )
    .order_by(*CLAIM_ORDER)
    .limit(bindparam("b_limit"))
    .with_for_update(skip_locked=True)
)
_CLAIMED_IDS = messages.c.id.in_(bindparam("b_ids", expanding=True))
# The statements, prepared once (securemail.storage.prepared); the UPDATEs SET the columns
# given with them.
_LOOK = Prepared(_DUE)
_MOVE = Prepared(update(messages).where(_CLAIMED_IDS))
_READ = Prepared(select(*HEAD, messages.c.body).where(_CLAIMED_IDS).order_by(*ORDER))
_due = _DUE.cte("due")
_TAKE = Prepared(
    update(messages)
    .where(messages.c.id == _due.c.id)
    .returning(
        *HEAD,
        messages.c.body,
        _due.c.state.label("was_state"),
        _due.c.claimed_by.label("was_held_by"),
    )
)


def claim_entries(  # noqa: PLR0917 - QueueManager.claim's parameters
    conn: Connection,
    direction: Direction,
    now: datetime,
    limit: int,
    owner: str,
    lease: timedelta,
    bodies: bool,
) -> list[Entry]:
    """Claim up to ``limit`` due entries in the caller's write transaction (see
    :meth:`securemail.queue.manager.ManagerRows.claim`), oldest first."""
    due = {"b_direction": direction, "b_now": now, "b_limit": limit}
    moved = {"state": State.ACTIVE, "updated_at": now}
    moved |= {"claimed_by": owner or None, "lease_until": now + lease}
    if bodies and conn.dialect.name == "postgresql":
        rows = sorted(_TAKE.rows(conn, due | moved), key=lambda row: (row.created_at, row.id))
        _note_takeovers(conn, [(r.id, r.was_state, r.was_held_by) for r in rows], owner, now)
        return entries_of(conn, rows)
    found = _LOOK.rows(conn, due)
    if not found:
        return []
    ids = [row.id for row in found]
    _MOVE.run(conn, moved | {"b_ids": ids})
    _note_takeovers(conn, [(r.id, r.state, r.claimed_by) for r in found], owner, now)
    if bodies:
        return entries_of(conn, _READ.rows(conn, {"b_ids": ids}))
    return select_entries(conn, messages.c.id.in_(ids), limit)


def _note_takeovers(
    conn: Connection, before: list[tuple[str, Any, Any]], owner: str, now: datetime
) -> None:
    """A "lease-expired" event for each entry that was ACTIVE: its holder died, or stalled
    past its lease, and this claim took it over."""
    for entry_id, state, held_by in before:
        if state == State.ACTIVE:
            held = f"held by {held_by or 'an unnamed claim'}; now {owner}"
            log_event(conn, entry_id, "lease-expired", now, detail=held)
