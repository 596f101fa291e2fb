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
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Select,
    Text,
    bindparam,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine

from securemail.records.classes import RecordClass
from securemail.records.schema import head, log, subjects
from securemail.storage.engine import transaction
from securemail.storage.prepared import Prepared as Statement

GENESIS = "0" * 64
VERSION = 1
__all__ = ["GENESIS", "Head", "NewRecord", "Prepared", "RecordClass", "append", "record"]


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


# RFC 8785 orders members by their names' UTF-16 code units; the record's own names are
# ASCII, so its members always come in this order: class, details, event, message_id,
# prev, seq, subjects, time, v. Everything but ``prev`` and ``seq`` is known before the
# chain's head is locked, so a record is written out in two parts beforehand and only
# linked (two values put between them, one SHA-256) while the lock is held.
# For strings, integers, null and ASCII member names, the standard library's encoder
# (no ASCII escaping, no spaces, sorted keys, written in C) writes exactly RFC 8785's
# form: ECMAScript's escapes (\b \f \n \r \t, other controls as lower-case \u00xx,
# nothing else escaped); tests/records/test_chain.py holds the two to the same bytes.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Prepared:
    """A record written out around its link: ``before`` + prev + ``","seq":`` + seq + ``after``."""

    new: NewRecord
    subjects: tuple[str, ...]
    before: str
    after: str


def prepare(new: NewRecord) -> Prepared:
    """Write ``new`` out in canonical form but for its ``prev`` and ``seq``."""
    about = normal_subjects(new.subjects)
    details = {str(k): str(v) for k, v in new.details.items()}
    # Python sorts names by code point, RFC 8785 by UTF-16 unit: the same for ASCII names
    written = (
        _JSON.encode(details)
        if all(k.isascii() for k in details)
        else rfc8785.dumps(details).decode("utf-8")
    )
    before = (
        f'{{"class":{_JSON.encode(new.record_class.value)},"details":{written},'
        f'"event":{_JSON.encode(new.event[:64])},'  # the column's width: both say the same
        f'"message_id":{_JSON.encode(new.message_id or None)},"prev":"'
    )
    after = f',"subjects":{_JSON.encode(about)},"time":"{timestamp(new.time)}","v":{VERSION}}}'
    return Prepared(new, tuple(about), before, after)


def link(prepared: Prepared, seq: int, prev: str) -> bytes:
    """The canonical bytes of record ``seq`` following ``prev`` (RFC 8785)."""
    return f'{prepared.before}{prev}","seq":{seq}{prepared.after}'.encode()


def encode(new: NewRecord, seq: int, prev: str) -> bytes:
    """The canonical bytes of record ``seq`` (RFC 8785)."""
    return link(prepare(new), seq, prev)


def digest(canonical: bytes) -> str:
    """The link to a record: hex SHA-256 of its canonical bytes."""
    return hashlib.sha256(canonical).hexdigest()


# Prepared once (securemail.storage.prepared): each queue transaction runs them.
_LOCK_HEAD = Statement(select(head.c.seq, head.c.digest).where(head.c.id == 1).with_for_update())
_READ_HEAD = select(head.c.seq, head.c.digest).where(head.c.id == 1)
_MOVE_HEAD = Statement(update(head).where(head.c.id == 1))  # SET the columns given with it
_INSERT_LOG = Statement(log.insert())
_INSERT_SUBJECTS = Statement(subjects.insert())


def _unnested(columns: Mapping[str, TypeEngine[Any]], alias: str) -> Select[Any]:
    """PostgreSQL: rows from one array parameter per column (``<alias>_<column>``), unnested
    side by side. The arrays are of unbounded types: a value too long for its column
    fails the INSERT, as a row of its own would, instead of being cut by the cast."""
    arrays = [cast(bindparam(f"{alias}_{name}"), ARRAY(kind)) for name, kind in columns.items()]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived(alias)
    return select(*(rows.c[name] for name in columns))


_TEXTS = ("record_class", "event", "message_id", "record", "prev", "digest")
_LOG_ARRAYS: dict[str, TypeEngine[Any]] = {"seq": BigInteger(), "time": DateTime(timezone=True)}
_LOG_ARRAYS |= dict.fromkeys(_TEXTS, Text())
_SUBJECT_ARRAYS: dict[str, TypeEngine[Any]] = {"seq": BigInteger(), "address": Text()}
# PostgreSQL: the log rows, their subjects and the head's move in one statement (data-
# modifying CTEs, all in the statement's snapshot, all or none): two statements and their
# round trips less per transaction than the three SQLite runs (in-process calls there).
_APPEND_ALL = Statement(
    update(head)
    .where(head.c.id == 1)
    .add_cte(
        log.insert().from_select(list(_LOG_ARRAYS), _unnested(_LOG_ARRAYS, "log")).cte("new_log")
    )
    .add_cte(
        subjects.insert()
        .from_select(list(_SUBJECT_ARRAYS), _unnested(_SUBJECT_ARRAYS, "subject"))
        .cte("new_subjects")
    )
)


def append(conn: Connection, news: Sequence[NewRecord]) -> Head | None:
    """Append ``news`` in order inside the caller's write transaction; the new head.

    The caller's transaction must be a write one (``transaction(..., write=True)``): on
    SQLite that is what takes the write lock first. The records are written out before
    the head is locked; under the lock each is only linked to the one before it.
    """
    if not news:
        return None
    prepared = [prepare(new) for new in news]
    current = lock(conn)
    seq, prev = current.seq, current.digest
    rows: list[dict[str, Any]] = []
    subject_rows: list[dict[str, Any]] = []
    for one in prepared:
        seq += 1
        canonical = link(one, seq, prev)
        link_to = hashlib.sha256(canonical).hexdigest()
        rows.append(_row(one.new, seq, canonical, prev, link_to))
        subject_rows += [{"seq": seq, "address": a[:320]} for a in one.subjects]
        prev = link_to
    if conn.dialect.name == "postgresql":
        arrays = {f"log_{c}": [r[c] for r in rows] for c in _LOG_ARRAYS}
        arrays |= {f"subject_{c}": [r[c] for r in subject_rows] for c in _SUBJECT_ARRAYS}
        _APPEND_ALL.run(conn, arrays | {"seq": seq, "digest": prev})
        return Head(seq, prev)
    _INSERT_LOG.run(conn, rows)
    if subject_rows:
        _INSERT_SUBJECTS.run(conn, subject_rows)
    _MOVE_HEAD.run(conn, {"seq": seq, "digest": prev})
    return Head(seq, prev)


def lock(conn: Connection) -> Head:
    """Lock the chain's head for the rest of the caller's write transaction; where it is."""
    row = _LOCK_HEAD.one(conn)
    return Head(int(row.seq), str(row.digest))


def _row(new: NewRecord, seq: int, canonical: bytes, prev: str, link_to: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": new.time,
        "record_class": new.record_class.value,
        "event": new.event[:64],
        "message_id": new.message_id or None,
        "record": canonical.decode("utf-8"),
        "prev": prev,
        "digest": link_to,
    }


def record(engine: Engine, *news: NewRecord) -> Head | None:
    """Append ``news`` in a transaction of their own (operator actions, the CLI)."""
    with transaction(engine, "records", write=True) as conn:
        return append(conn, news)


def current_head(conn: Connection) -> Head:
    """The chain's head as the head row says."""
    row = conn.execute(_READ_HEAD).one()
    return Head(int(row.seq), str(row.digest))
