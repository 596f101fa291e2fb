"""The queue's tables and the row-level reads and writes the store composes.

The schema is created by the one Alembic chain (securemail.storage.migrations); the table
definitions below must stay identical to what it produces (a test compares them). Types
are portable: bodies are LargeBinary (PostgreSQL bytea, SQLite BLOB), times are in UTC.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    Text,
    bindparam,
    select,
    true,
    update,
)

from securemail.queue import eventlog
from securemail.queue.model import (
    Direction,
    Disposition,
    Entry,
    NewMessage,
    QueueError,
    QueueReason,
    ReceiptState,
    Recipient,
    State,
)
from securemail.queue.retry import Change, Settlement
from securemail.replies import Reply
from securemail.storage.dialect import notify
from securemail.storage.prepared import Prepared
from securemail.storage.types import UtcDateTime

metadata = MetaData()

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("direction", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("org_id", String(255), nullable=False),
    Column("mail_from", Text, nullable=False),
    Column("message_id", Text),
    Column("client", Text, nullable=False),
    Column("auth", Text),
    Column("size", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime),
    Column("attempts", Integer, nullable=False),
    Column("last_reply", Text),
    Column("reason", String(64)),
    Column("warned", Boolean, nullable=False),
    Column("claimed_by", String(255)),  # the node holding an ACTIVE entry (0003)
    Column("priority", Integer, nullable=False, server_default="0"),  # claim order (0004)
    Column("lease_until", UtcDateTime),  # an ACTIVE entry's claim holds until then (0007)
    Column("assurance", Text),  # the submission's sender assurance, JSON (0010)
    Index("ix_messages_claim", "direction", "state", "next_attempt_at"),
    Index("ix_messages_state_updated", "state", "updated_at"),
    Index("ix_messages_lease", "state", "lease_until"),
    Index("ix_messages_kind_org", "kind", "org_id", "state"),  # backlog, key holds (0012)
)

recipients = Table(
    "recipients",
    metadata,
    Column("entry_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("address", Text, nullable=False),
    Column("disposition", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_reply", Text),
    Column("reason", String(64)),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("receipt_state", String(16), nullable=False, server_default=ReceiptState.NONE.value),
    Column("receipt_deadline", UtcDateTime),
    Column("receipted_at", UtcDateTime),
    Column("receipt", LargeBinary),
    Column("evidence", Text),
    Index("ix_recipients_receipt_due", "receipt_state", "receipt_deadline"),
)

# No foreign key: an entry's history outlives an operator's delete of the entry.
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("entry_id", String(32), nullable=False, index=True),
    Column("time", UtcDateTime, nullable=False),
    Column("event", String(32), nullable=False),
    Column("recipient", Text),
    Column("reason", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

# No foreign key either: what we signed and the receipts for it are evidence that outlives
# the entry. ``recipients`` is a JSON list of addresses (no pickle in stored records).
signatures = Table(
    "signatures",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("entry_id", String(32), nullable=False, index=True),
    Column("content_identifier", String(256), nullable=False),
    Column("peer_org", String(255), nullable=False),
    Column("recipients", Text, nullable=False),
    Column("signed_data", LargeBinary, nullable=False),
    Column("basis", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_signatures_content_identifier", "content_identifier", unique=True),
)

delivery_keys = Table(
    "delivery_keys",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("stored_at", UtcDateTime, nullable=False, index=True),
    # The entry that reserved the key and whether its delivery was recorded (0007): the
    # primary key makes one reservation, and one delivery, per key across every process.
    Column("entry_id", String(32), index=True),
    Column("delivered", Boolean, nullable=False, server_default=true()),
)

HEAD = [c for c in messages.c if c.name not in ("body", "updated_at")]
ORDER = (messages.c.created_at, messages.c.id)  # oldest first: ids sort by arrival too
# Workers claim SecureMail traffic (priority 0) ahead of ordinary mail (1) when both wait
# (issue 7 §4); within a priority, oldest first, so neither starves the other's order.
CLAIM_ORDER = (messages.c.priority, *ORDER)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WORK_CHANNEL = "securemail_work"  # PostgreSQL NOTIFY channel: the direction of new work

# The message path's statements, prepared once (securemail.storage.prepared): compiled
# once per dialect and run on the driver's cursor, without the per-execution machinery of
# Connection.execute, which cost more per message than the database's own work (profile in
# docs/performance.md). Values come as bound parameters, never in the SQL text.
_HEAD_BY_ID = Prepared(select(*HEAD).where(messages.c.id == bindparam("entry_id")))
# A Recipient's columns, in its fields' order.
_PERSON = tuple(
    recipients.c[c]
    for c in (
        *("address", "disposition", "attempts", "last_reply", "reason", "updated_at"),
        "receipt_state",
    )
)
# An entry with its recipients in one statement, the entry's row locked (not the
# recipients': receipts lock those, securemail.queue.tracking).
_ENTRY_FOR_UPDATE = Prepared(
    select(*HEAD, *(c.label(f"r_{c.name}") for c in _PERSON))
    .select_from(messages.outerjoin(recipients, recipients.c.entry_id == messages.c.id))
    .where(messages.c.id == bindparam("entry_id"))
    .order_by(recipients.c.position)
    .with_for_update(of=messages)
)
_RECIPIENTS_OF = Prepared(
    select(recipients.c.entry_id, *_PERSON)
    .where(recipients.c.entry_id.in_(bindparam("ids", expanding=True)))
    .order_by(recipients.c.entry_id, recipients.c.position)
)
_INSERT_MESSAGE = Prepared(messages.insert())
_INSERT_RECIPIENTS = Prepared(recipients.insert())
_INSERT_EVENTS = Prepared(events.insert())
# UPDATEs whose SET columns are the keys of the parameters given with them ("b_" keys bind
# the WHERE clause).
_UPDATE_ENTRY = Prepared(update(messages).where(messages.c.id == bindparam("b_id")))
RECIPIENT_ROW = (recipients.c.entry_id == bindparam("b_id")) & (
    recipients.c.position == bindparam("b_position")
)
UPDATE_RECIPIENT = Prepared(update(recipients).where(RECIPIENT_ROW))
_UPDATE_RECIPIENT_TRIED = Prepared(
    update(recipients).where(RECIPIENT_ROW).values(attempts=recipients.c.attempts + 1)
)
_EVENT_ROWS = "securemail.queue.event_rows"  # Connection.info: this transaction's event rows


def message_row(entry_id: str, new: NewMessage, now: datetime) -> dict[str, Any]:
    """The messages row of a new entry: INCOMING, due now."""
    return {
        "id": entry_id,
        "direction": new.direction,
        "state": State.INCOMING,
        "kind": new.kind,
        "org_id": new.org_id,
        "mail_from": new.mail_from,
        "message_id": new.message_id,
        "client": new.client,
        "auth": new.auth,
        "size": len(new.body),
        "body": new.body,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "attempts": 0,
        "warned": False,
        "priority": new.priority,
        "assurance": new.assurance,
    }


def log_event(
    conn: Connection,
    entry_id: str,
    event: str,
    now: datetime,
    *,
    recipient: str | None = None,
    reason: str = "",
    detail: str = "",
    reply: Reply | None = None,
) -> None:
    """Add an event to the entry's history, and to the operations log once committed.

    ``reply`` splits the log line's ``reply=`` and ``detail=`` (the history's ``detail``
    already holds both). Inside :func:`grouped_events` the row is written with the others
    of the transaction, in order, before it commits.
    """
    row = {
        "entry_id": entry_id,
        "time": now,
        "event": event,
        "recipient": recipient,
        "reason": reason,
        "detail": detail,
    }
    grouped = conn.info.get(_EVENT_ROWS)
    if grouped is None:
        _INSERT_EVENTS.run(conn, row)
    else:
        grouped.append(row)
    eventlog.keep(
        conn,
        entry_id,
        event,
        now,
        recipient=recipient or "",
        reason=reason,
        reply="" if reply is None else reply.line(),
        detail=detail if reply is None else reply.detail,
    )


@contextmanager
def grouped_events(conn: Connection) -> Iterator[None]:
    """Within: the events :func:`log_event` adds are written in one multi-row INSERT (in
    the order they were added) when the block ends, not one INSERT each. Use inside the
    transaction: the rows commit with it or not at all."""
    rows: list[dict[str, Any]] = []
    conn.info[_EVENT_ROWS] = rows
    try:
        yield
        if rows:
            _INSERT_EVENTS.run(conn, rows)
    finally:
        conn.info.pop(_EVENT_ROWS, None)


def head(entry_id: str) -> Select[Any]:
    """An entry's row without its body."""
    return select(*HEAD).where(messages.c.id == entry_id)


def lock_entry(
    conn: Connection, entry_id: str, allowed: Iterable[State], *, holder: str | None = None
) -> Entry:
    """The entry, row-locked for this transaction, if its state is one of ``allowed`` and,
    given a ``holder``, if that claim still holds it (the fence: QueueError LEASE_LOST when
    another process took it over or it went back to the queue; checked under the row lock,
    so no takeover can slip in between the check and the caller's writes)."""
    rows = _ENTRY_FOR_UPDATE.rows(conn, {"entry_id": entry_id})
    row = rows[0] if rows else None
    if row is None:
        raise QueueError(QueueReason.NOT_FOUND, f"no queue entry {entry_id}")
    if holder is not None and row.claimed_by != holder:
        now_held = f"held by {row.claimed_by}" if row.claimed_by else "returned to the queue"
        detail = f"{entry_id} was claimed by {holder}; it is {row.state}, {now_held}"
        raise QueueError(QueueReason.LEASE_LOST, detail)
    allowed = set(allowed)
    if row.state not in allowed:
        expected = ", ".join(sorted(allowed))
        raise QueueError(QueueReason.BAD_STATE, f"{entry_id} is {row.state}, not {expected}")
    people = (_person(*r[len(HEAD) :]) for r in rows if r.r_address is not None)
    return _entry(row, tuple(people))


def one_entry(conn: Connection, entry_id: str) -> Entry:
    """An entry known to exist (read inside the transaction that changed it)."""
    return entries_of(conn, _HEAD_BY_ID.rows(conn, {"entry_id": entry_id}))[0]


def select_entries(conn: Connection, where: ColumnElement[bool], limit: int) -> list[Entry]:
    """Up to ``limit`` entries matching ``where``, oldest first."""
    rows = conn.execute(select(*HEAD).where(where).order_by(*ORDER).limit(limit)).all()
    return entries_of(conn, rows)


def entries_of(conn: Connection, rows: Iterable[Any]) -> list[Entry]:
    """Entries for message ``rows`` (with the columns of ``HEAD``, and ``body`` if read),
    with their recipients in envelope order."""
    rows = list(rows)
    found: dict[str, list[Recipient]] = {row.id: [] for row in rows}
    if not found:
        return []
    for r in _RECIPIENTS_OF.rows(conn, {"ids": list(found)}):
        found[r.entry_id].append(_person(*r[1:]))
    return [_entry(row, tuple(found[row.id])) for row in rows]


def _person(  # noqa: PLR0917 - a recipient row's columns, in _PERSON order
    address: str,
    disposition: str,
    attempts: int,
    last_reply: str | None,
    reason: str | None,
    updated_at: datetime,
    receipt_state: str,
) -> Recipient:
    return Recipient(
        address,
        Disposition(disposition),
        attempts,
        last_reply,
        reason,
        updated_at,
        ReceiptState(receipt_state),
    )


def _entry(row: Any, people: tuple[Recipient, ...]) -> Entry:
    return Entry(
        id=row.id,
        direction=Direction(row.direction),
        state=State(row.state),
        kind=row.kind,
        org_id=row.org_id,
        mail_from=row.mail_from,
        message_id=row.message_id,
        client=row.client,
        auth=row.auth,
        size=row.size,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        attempts=row.attempts,
        last_reply=row.last_reply,
        reason=row.reason,
        warned=row.warned,
        recipients=people,
        priority=row.priority,
        claimed_by=row.claimed_by,
        assurance=row.assurance,
        body=bytes(row.body) if "body" in row._fields else None,
    )


def write_settlement(conn: Connection, entry: Entry, outcome: Settlement, now: datetime) -> Entry:
    """Write an attempt's settlement: each recipient and its event, then the entry itself.

    Returns the entry as it now stands, made from the values written (the entry is locked
    and nothing else changes it in this transaction), so it is not read back.
    """
    people = list(entry.recipients)
    positions = {r.address: i for i, r in enumerate(entry.recipients)}
    for change in outcome.changes:
        position = positions[change.address]
        people[position] = _write_change(
            conn, entry.id, position, people[position], change, now=now
        )
    values: dict[str, Any] = {
        "b_id": entry.id,
        "state": outcome.state,
        "next_attempt_at": outcome.next_attempt_at,
        "attempts": entry.attempts + 1,
        "updated_at": now,
    }
    if outcome.reply is not None:
        values |= {"last_reply": outcome.reply.line(), "reason": outcome.reply.reason or None}
    if outcome.expired:
        values["reason"] = "expired"
    _UPDATE_ENTRY.run(conn, values)
    due = outcome.next_attempt_at
    return replace(
        entry,
        state=outcome.state,
        next_attempt_at=None if due is None else due.astimezone(UTC),  # as read back
        attempts=entry.attempts + 1,
        last_reply=values.get("last_reply", entry.last_reply),
        reason=values.get("reason", entry.reason),
        recipients=tuple(people),
    )


def _write_change(
    conn: Connection,
    entry_id: str,
    position: int,
    person: Recipient,
    change: Change,
    *,
    now: datetime,
) -> Recipient:
    """Write one recipient's change and its event; the recipient as it now stands."""
    reply = change.reply
    reason = "expired" if change.event == "expired" else (reply.reason if reply else "")
    values: dict[str, Any] = {
        "b_id": entry_id,
        "b_position": position,
        "disposition": change.disposition,
        "updated_at": now,
        "reason": reason or None,
    }
    if reply is None:
        UPDATE_RECIPIENT.run(conn, values)
    else:
        _UPDATE_RECIPIENT_TRIED.run(conn, values | {"last_reply": reply.line()})
    # The peer's text (it may hold their queue id) goes to the history, never to a peer.
    detail = f"{reply.line()} ({reply.detail})" if reply and reply.detail else ""
    detail = detail or (reply.line() if reply else "not tried before the maximum lifetime")
    log_event(
        conn,
        entry_id,
        change.event,
        now,
        recipient=change.address,
        reason=reason,
        detail=detail,
        reply=reply,
    )
    return replace(
        person,
        disposition=change.disposition,
        attempts=person.attempts + (reply is not None),
        last_reply=person.last_reply if reply is None else reply.line(),
        reason=reason or None,
        updated_at=now.astimezone(UTC),  # as UtcDateTime reads it back
    )


def insert_entries(conn: Connection, news: Sequence[NewMessage], now: datetime) -> list[str]:
    """Insert accepted messages (rows, recipients, an "accepted" event each); their new ids.

    All the rows of each table go in one statement. Workers in other processes and nodes
    are woken once per direction, when the transaction commits.
    """
    if not news:
        return []
    ids = [_new_id(now) for _ in news]
    entries = list(zip(ids, news, strict=True))
    _INSERT_MESSAGE.run(conn, [message_row(i, new, now) for i, new in entries])
    people = [
        {"entry_id": entry_id, "position": position, "address": address}
        | {"disposition": Disposition.PENDING, "attempts": 0, "updated_at": now}
        for entry_id, new in entries
        for position, address in enumerate(new.recipients)
    ]
    if people:
        _INSERT_RECIPIENTS.run(conn, people)
    for entry_id, new in entries:
        eventlog.note_entry(conn, entry_id, new, now)
        detail = f"{new.client}; {len(new.recipients)} recipients; {len(new.body)} bytes"
        log_event(conn, entry_id, "accepted", now, detail=detail)
    for direction in sorted({new.direction for new in news}):
        notify(conn, WORK_CHANNEL, direction)
    return ids


def follow_up(conn: Connection, entry_id: str, news: Sequence[NewMessage], now: datetime) -> None:
    """Queue messages an entry's outcome caused (notices); their ids go to its history."""
    if news:
        ids = insert_entries(conn, news, now)
        log_event(conn, entry_id, "queued-follow-up", now, detail=", ".join(ids))


def _new_id(now: datetime) -> str:
    """Microseconds since 1970 (14 hex digits: sorts by arrival) and 40 random bits."""
    micros = (now - _EPOCH) // timedelta(microseconds=1)
    return f"{micros:014x}{secrets.token_hex(5)}"
