"""Disposal: destroy what is past its retention, unless held, and record what went.

For each class (:data:`securemail.records.retention.DISPOSABLE`) whose period has passed,
in one write transaction under the chain's lock:

- its log records older than the cut-off are emptied: the canonical text goes, the
  ``seq``, ``prev`` and ``digest`` stay, so the chain and every checkpoint still verify;
- message: final queue entries (delivered or bounced) last changed before the cut-off
  are deleted with their recipients, history and signatures, once their evidence is due too;
- evidence: receipts and evidence of entries last changed before the cut-off are deleted;
- quarantine: quarantined entries (their content included) are deleted.

What a legal hold covers (an address as sender, recipient or subject; a Message-ID)
stays. Then one disposal record (class ``disposal``, kept for good) says what went: class,
how many entries and log records, the date range, the authority, the cut-off, and
SHA-256 digests of the destroyed data and of the destroyed records' digests
(:func:`securemail.records.verify.destroyed_digest`, which verify checks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    delete,
    exists,
    false,
    or_,
    select,
    update,
)

from securemail.queue.model import State
from securemail.queue.schema import events, messages, recipients, signatures
from securemail.records.chain import NewRecord, RecordClass, append, lock, timestamp
from securemail.records.holds import Hold, standing
from securemail.records.retention import DISPOSABLE, RecordsSettings
from securemail.records.schema import log, subjects
from securemail.records.verify import destroyed_digest
from securemail.storage.engine import transaction

DISPOSED = "records.disposed"


@dataclass(frozen=True)
class Disposal:
    """What one class's disposal destroyed (the disposal record's ``seq``)."""

    record_class: RecordClass
    entries: int
    log_records: int
    seq: int


def dispose(engine: Engine, settings: RecordsSettings, now: datetime) -> list[Disposal]:
    """Dispose of every class that has something due; one disposal record each."""
    done = []
    for record_class in DISPOSABLE:
        cutoff = now - settings.keep[record_class]
        with transaction(engine, f"dispose {record_class}", write=True) as conn:
            authority = settings.authority[record_class]
            result = _dispose_class(
                conn, settings, record_class, cutoff=cutoff, authority=authority, now=now
            )
        if result is not None:
            done.append(result)
    return done


def _dispose_class(
    conn: Connection,
    settings: RecordsSettings,
    record_class: RecordClass,
    *,
    cutoff: datetime,
    authority: str,
    now: datetime,
) -> Disposal | None:
    held = standing(conn)
    entries = _due_entries(conn, settings, record_class, cutoff=cutoff, held=held, now=now)
    # The chain's lock after the entries' row locks, as every queue transaction takes
    # them (rows, then the head at its end): the other order could deadlock on PostgreSQL.
    lock(conn)
    if standing(conn) != held:  # a hold was placed meanwhile (under this lock): next run
        return None
    records = _due_records(conn, record_class, cutoff, held)
    if not entries and not records:
        return None
    times = [r.time for r in records] + [e["updated_at"] for e in entries]
    data_digest = hashlib.sha256(b"".join(rfc8785.dumps(e | _times(e)) for e in entries))
    details = {
        "class": record_class.value,
        "entries": str(len(entries)),
        "log_records": str(len(records)),
        "log_digest": destroyed_digest([r.digest for r in records]),
        "data_digest": data_digest.hexdigest(),
        "from": timestamp(min(times)),
        "to": timestamp(max(times)),
        "cutoff": timestamp(cutoff),
        "authority": authority,
    }
    head = append(conn, [NewRecord(now, RecordClass.DISPOSAL, DISPOSED, details=details)])
    assert head is not None  # noqa: S101 (one record was appended)
    _destroy(conn, record_class, entries, records, head.seq)
    return Disposal(record_class, len(entries), len(records), head.seq)


def _times(entry: dict[str, Any]) -> dict[str, str]:
    return {k: timestamp(v) for k, v in entry.items() if isinstance(v, datetime)}


def _held_entry(held: Sequence[Hold]) -> ColumnElement[bool]:
    addresses = [h.address for h in held if h.address]
    message_ids = [h.message_id for h in held if h.message_id]
    if not held:
        return false()
    about = select(recipients.c.entry_id).where(recipients.c.address.in_(addresses))
    return or_(
        messages.c.message_id.in_(message_ids),
        messages.c.mail_from.in_(addresses),
        messages.c.id.in_(about),
    )


def _due_entries(
    conn: Connection,
    settings: RecordsSettings,
    record_class: RecordClass,
    *,
    cutoff: datetime,
    held: Sequence[Hold],
    now: datetime,
) -> list[dict[str, Any]]:
    """The queue entries (or, for evidence, entries with evidence) this class destroys."""
    with_evidence = exists().where(
        (recipients.c.entry_id == messages.c.id)
        & (recipients.c.receipt.is_not(None) | recipients.c.evidence.is_not(None))
    )
    old = messages.c.updated_at < cutoff
    if record_class is RecordClass.MESSAGE:
        evidence_due = messages.c.updated_at < now - settings.keep[RecordClass.EVIDENCE]
        state = messages.c.state.in_([State.DELIVERED, State.BOUNCED])
        due = and_(old, state, or_(~with_evidence, evidence_due))
    elif record_class is RecordClass.EVIDENCE:
        due = and_(old, with_evidence)
    elif record_class is RecordClass.QUARANTINE:
        due = and_(old, messages.c.state == State.QUARANTINED)
    else:
        return []
    columns = (messages.c.id, messages.c.state, messages.c.created_at, messages.c.updated_at)
    query = select(*columns, messages.c.size).where(due & ~_held_entry(held))
    rows = conn.execute(query.order_by(messages.c.id).with_for_update()).all()
    return [dict(row._mapping) for row in rows]


def _due_records(
    conn: Connection, record_class: RecordClass, cutoff: datetime, held: Sequence[Hold]
) -> list[Any]:
    addresses = [h.address for h in held if h.address]
    message_ids = [h.message_id for h in held if h.message_id]
    held_subject = exists().where((subjects.c.seq == log.c.seq) & subjects.c.address.in_(addresses))
    due = and_(
        log.c.record_class == record_class.value,
        log.c.time < cutoff,
        log.c.record.is_not(None),
        ~held_subject,
        or_(log.c.message_id.is_(None), log.c.message_id.not_in(message_ids)),
    )
    query = select(log.c.seq, log.c.time, log.c.digest).where(due).order_by(log.c.seq)
    return list(conn.execute(query).all())


def _destroy(
    conn: Connection,
    record_class: RecordClass,
    entries: Sequence[dict[str, Any]],
    records: Sequence[Any],
    by: int,
) -> None:
    ids = [e["id"] for e in entries]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        if record_class is RecordClass.EVIDENCE:
            chosen = recipients.c.entry_id.in_(chunk)
            conn.execute(update(recipients).where(chosen).values(receipt=None, evidence=None))
            conn.execute(delete(signatures).where(signatures.c.entry_id.in_(chunk)))
            continue
        conn.execute(delete(events).where(events.c.entry_id.in_(chunk)))
        conn.execute(delete(signatures).where(signatures.c.entry_id.in_(chunk)))
        conn.execute(delete(recipients).where(recipients.c.entry_id.in_(chunk)))
        conn.execute(delete(messages).where(messages.c.id.in_(chunk)))
    seqs = [r.seq for r in records]
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        conn.execute(delete(subjects).where(subjects.c.seq.in_(chunk)))
        emptied = update(log).where(log.c.seq.in_(chunk)).values(record=None, disposed_by=by)
        conn.execute(emptied)
