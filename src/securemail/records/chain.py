"""The operations log's chain: each record's canonical form, and appending in one order.

Theory of operation. A record is one RFC 8785 (JSON Canonicalization Scheme) object::

    {"class":"message","details":{...},"event":"queue.delivered","message_id":"<1@a.nz>",
     "prev":"<64 hex>","seq":42,"subjects":["bob@msp.nz"],"time":"2026-12-07T…Z","v":1}

``prev`` is the ``digest`` (hex SHA-256 of the canonical bytes) of record ``seq - 1``,
64 zeros for the first. Changing a byte of a record changes its digest, so the next
record's ``prev`` no longer matches; removing or reordering records breaks ``seq`` or
``prev``. The row keeps the canonical text as written, and the columns a query needs
(time, class, event, Message-ID, and the subjects table) beside it.

Linear across processes and nodes: :func:`append` locks the one ``records_head`` row
(``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the writer's ``BEGIN IMMEDIATE``
already holds the database's one write lock) and moves it in the same transaction, and
``seq`` is the primary key, so two writers can never both write the same next record.

Security: metadata only. Callers pass event names, envelope addresses, Message-IDs, queue
ids, reason codes and counts, never a body, a header other than Message-ID, a password or
key material.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import Connection, Engine, select, update

from securemail.records.classes import RecordClass
from securemail.records.schema import head, log, subjects
from securemail.storage.engine import transaction

GENESIS = "0" * 64
VERSION = 1
__all__ = ["GENESIS", "Head", "NewRecord", "RecordClass", "append", "record"]


@dataclass(frozen=True)
class NewRecord:
    """A record to append: metadata about one thing that happened."""

    time: datetime
    record_class: RecordClass
    event: str
    subjects: tuple[str, ...] = ()  # the addresses it is about (envelope, account names)
    message_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Head:
    """Where the chain stands: its last record's number and digest."""

    seq: int
    digest: str


def timestamp(time: datetime) -> str:
    """A record's time: UTC, microseconds, ``Z``."""
    if time.tzinfo is None:
        raise ValueError("record times must be timezone-aware")
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normal_subjects(addresses: Sequence[str]) -> list[str]:
    """Subjects as stored and searched: lower-case, each once, sorted, blanks dropped."""
    return sorted({a.strip().lower() for a in addresses if a.strip() and a.strip() != "<>"})


def encode(new: NewRecord, seq: int, prev: str) -> bytes:
    """The canonical bytes of record ``seq`` (RFC 8785)."""
    record: dict[str, Any] = {
        "v": VERSION,
        "seq": seq,
        "time": timestamp(new.time),
        "class": new.record_class.value,
        "event": new.event[:64],  # the column's width: both must say the same
        "message_id": new.message_id or None,
        "subjects": normal_subjects(new.subjects),
        "details": {str(k): str(v) for k, v in new.details.items()},
        "prev": prev,
    }
    return rfc8785.dumps(record)


def digest(canonical: bytes) -> str:
    """The link to a record: hex SHA-256 of its canonical bytes."""
    return hashlib.sha256(canonical).hexdigest()


def append(conn: Connection, news: Sequence[NewRecord]) -> Head | None:
    """Append ``news`` in order inside the caller's write transaction; the new head.

    The caller's transaction must be a write one (``transaction(..., write=True)``): on
    SQLite that is what takes the write lock first.
    """
    if not news:
        return None
    current = lock(conn)
    seq, prev = current.seq, current.digest
    rows: list[dict[str, Any]] = []
    subject_rows: list[dict[str, Any]] = []
    for new in news:
        seq += 1
        canonical = encode(new, seq, prev)
        link = digest(canonical)
        rows.append(_row(new, seq, canonical, prev, link))
        subject_rows += [{"seq": seq, "address": a[:320]} for a in normal_subjects(new.subjects)]
        prev = link
    conn.execute(log.insert(), rows)
    if subject_rows:
        conn.execute(subjects.insert(), subject_rows)
    conn.execute(update(head).where(head.c.id == 1).values(seq=seq, digest=prev))
    return Head(seq, prev)


def lock(conn: Connection) -> Head:
    """Lock the chain's head for the rest of the caller's write transaction; where it is."""
    locked = select(head.c.seq, head.c.digest).where(head.c.id == 1).with_for_update()
    row = conn.execute(locked).one()
    return Head(int(row.seq), str(row.digest))


def _row(new: NewRecord, seq: int, canonical: bytes, prev: str, link: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": new.time,
        "record_class": new.record_class.value,
        "event": new.event[:64],
        "message_id": new.message_id or None,
        "record": canonical.decode("utf-8"),
        "prev": prev,
        "digest": link,
    }


def record(engine: Engine, *news: NewRecord) -> Head | None:
    """Append ``news`` in a transaction of their own (operator actions, the CLI)."""
    with transaction(engine, "records", write=True) as conn:
        return append(conn, news)


def current_head(conn: Connection) -> Head:
    """The chain's head as the head row says."""
    row = conn.execute(select(head.c.seq, head.c.digest).where(head.c.id == 1)).one()
    return Head(int(row.seq), str(row.digest))
