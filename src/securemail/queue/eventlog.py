"""The queue's events as operations-log lines, written once their transaction committed.

:func:`securemail.queue.schema.log_event` writes an event to the history table and, while
a write transaction collects (:func:`collecting`), keeps it here too. Just before the
commit, one query reads the Message-ID, sender, client, direction and arrival time of the
entries involved; after the commit, :func:`securemail.logbook.queue_events` writes the
lines. A rolled-back transaction writes none, so the log shows exactly the history.
The same descriptions become records of the tamper-evident operations log
(:mod:`securemail.records`), appended inside the transaction itself, so a committed
event always has its record; the log lines are handed on only when the log or an observer
(metrics) wants them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select

from securemail import logbook
from securemail.queue.model import Entry, NewMessage
from securemail.records.chain import append
from securemail.records.messages import queue_records
from securemail.storage.prepared import Prepared

_KEY = "securemail.queue.eventlog"


@dataclass(frozen=True)
class _Head:
    """What a log line says of its entry (the columns :func:`_heads` reads)."""

    id: str
    direction: str
    message_id: str | None
    mail_from: str
    client: str
    created_at: datetime


@dataclass
class _Pending:
    events: list[tuple[str, str, datetime, str, str, str, str]] = field(default_factory=list)
    relays: dict[tuple[str, str], str] = field(default_factory=dict)
    # Entries this transaction inserted or settled: their heads and recipients are known,
    # not read back.
    heads: dict[str, _Head] = field(default_factory=dict)
    recipients: dict[str, list[str]] = field(default_factory=dict)


def keep(
    conn: Connection,
    entry_id: str,
    event: str,
    now: datetime,
    *,
    recipient: str,
    reason: str,
    reply: str,
    detail: str,
) -> None:
    """Keep an event for the log if this transaction collects (called by log_event)."""
    pending = conn.info.get(_KEY)
    if pending is not None:
        pending.events.append((entry_id, event, now, recipient, reason, reply, detail))


def note_relays(conn: Connection, entry_id: str, relays: Mapping[str, str]) -> None:
    """Where an attempt sent each recipient (``host:port``), for its lines' ``relay=``."""
    pending = conn.info.get(_KEY)
    if pending is not None:
        pending.relays |= {(entry_id, r.casefold()): where for r, where in relays.items()}


def note_entry(conn: Connection, entry_id: str, new: NewMessage, now: datetime) -> None:
    """An entry this transaction inserts (called by insert_entries): its lines and records
    take its head and recipients from here instead of reading them back."""
    pending = conn.info.get(_KEY)
    if pending is not None:
        pending.heads[entry_id] = _Head(
            entry_id, new.direction, new.message_id, new.mail_from, new.client, now
        )
        pending.recipients[entry_id] = list(new.recipients)


def note_known(conn: Connection, entry: Entry) -> None:
    """An entry this transaction read and holds locked, whose head and recipients it does
    not change (a settlement): its lines and records take them from here instead of
    reading them again at the commit."""
    pending = conn.info.get(_KEY)
    if pending is not None:
        pending.heads[entry.id] = _Head(
            entry.id,
            entry.direction,
            entry.message_id,
            entry.mail_from,
            entry.client,
            entry.created_at,
        )
        pending.recipients[entry.id] = [r.address for r in entry.recipients]


@contextmanager
def collecting(
    conn: Connection, messages: Table, wanted: bool
) -> Iterator[list[logbook.QueueLine]]:
    """Collect the events written on ``conn``; just before the commit they are appended to
    the records log and, if ``wanted``, the list is filled (with the heads read from
    ``messages``, the queue's table).

    Use inside the transaction; write the lines only after it committed.
    """
    lines: list[logbook.QueueLine] = []
    pending = conn.info[_KEY] = _Pending()
    try:
        yield lines
        described = _describe(conn, pending, messages)
        append(conn, queue_records(described, _recipients(conn, pending, messages)))
        if wanted:
            lines.extend(described)
    finally:
        conn.info.pop(_KEY, None)


def _recipients(conn: Connection, pending: _Pending, messages: Table) -> dict[str, list[str]]:
    """The recipients of the entries whose events name none (``accepted``, ``deleted``…)."""
    ids = {event[0] for event in pending.events if not event[3]}
    found = {i: pending.recipients[i] for i in ids if i in pending.recipients}
    unknown = list(ids - found.keys())
    if unknown:
        for row in _recipients_of(messages).rows(conn, {"b_ids": unknown}):
            found.setdefault(row.entry_id, []).append(row.address)
    return found


@functools.cache
def _recipients_of(messages: Table) -> Prepared:
    """The recipients of the entries named ``b_ids`` (prepared once)."""
    recipients = messages.metadata.tables["recipients"]
    query = select(recipients.c.entry_id, recipients.c.address)
    return Prepared(query.where(recipients.c.entry_id.in_(bindparam("b_ids", expanding=True))))


@functools.cache
def _heads(messages: Table) -> Prepared:
    """What a log line says of its entry, for the entries named ``b_ids`` (prepared once)."""
    columns = (messages.c.id, messages.c.direction, messages.c.message_id, messages.c.mail_from)
    query = select(*columns, messages.c.client, messages.c.created_at)
    return Prepared(query.where(messages.c.id.in_(bindparam("b_ids", expanding=True))))


def _describe(conn: Connection, pending: _Pending, messages: Table) -> list[logbook.QueueLine]:
    heads: dict[str, Any] = dict(pending.heads)
    unknown = list({event[0] for event in pending.events} - heads.keys())
    if unknown:
        heads |= {row.id: row for row in _heads(messages).rows(conn, {"b_ids": unknown})}
    lines = []
    for entry_id, event, now, recipient, reason, reply, detail in pending.events:
        head = heads.get(entry_id)  # None once deleted
        lines.append(
            logbook.QueueLine(
                queue_id=entry_id,
                event=event,
                time=now,
                direction="" if head is None else str(head.direction),
                message_id="" if head is None else head.message_id or "",
                sender="" if head is None else head.mail_from or "<>",
                recipient=recipient,
                client="" if head is None else head.client or "",
                relay=pending.relays.get((entry_id, recipient.casefold()), ""),
                reason=reason,
                reply=reply,
                created_at=None if head is None else head.created_at,
                detail=detail,
            )
        )
    return lines
