"""Receipt tracking rows: the signatures an attempt made and each recipient's receipt state.

Theory of operation. An attempt that relayed a recipient under a signature requesting an ESS
receipt (RFC 2634 §2) stores the signature and moves the recipient from NONE to AWAITING
with a deadline, in the attempt's own transaction. From AWAITING exactly one of two things
happens, each under the recipient row's lock (PostgreSQL ``FOR UPDATE``; SQLite writers are
serialised by ``BEGIN IMMEDIATE``): a receipt makes it RECEIPTED, or the deadline passing
makes it EXPIRED. Whichever commits second finds the state changed and does nothing, so two
copies of a receipt, or a receipt racing the expiry, can never both win.

Recipients are matched by address case-insensitively, as the queue matches replies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, select

from securemail.queue.model import (
    Disposition,
    Entry,
    NewSignature,
    QueueError,
    QueueReason,
    ReceiptOutcome,
    ReceiptRecord,
    ReceiptState,
    SentSignature,
)
from securemail.queue.schema import (
    RECIPIENT_ROW,
    UPDATE_RECIPIENT,
    log_event,
    messages,
    recipients,
    signatures,
)
from securemail.replies import Reply
from securemail.storage.prepared import Prepared

_RECORD_ORDER = (messages.c.created_at, messages.c.id, recipients.c.position)
# The statements of every attempt and receipt, prepared once (see securemail.queue.schema).
_INSERT_SIGNATURE = Prepared(signatures.insert())
_SIGNATURE = Prepared(
    select(signatures)
    .where(signatures.c.content_identifier == bindparam("b_content_identifier"))
    .order_by(signatures.c.id)
)
_POSITIONS = Prepared(
    select(recipients.c.position, recipients.c.address).where(
        recipients.c.entry_id == bindparam("b_id")
    )
)
_LOCK_RECIPIENT = Prepared(select(recipients).where(RECIPIENT_ROW).with_for_update())


def store_signatures(
    conn: Connection, entry: Entry, sent: Sequence[NewSignature], now: datetime
) -> None:
    """Insert an attempt's signatures; each must name only recipients of ``entry``."""
    known = {r.address.casefold() for r in entry.recipients}
    for signature in sent:
        if any(address.casefold() not in known for address in signature.recipients):
            detail = f"{entry.id}: a signature names an address that is not on the entry"
            raise QueueError(QueueReason.BAD_STATE, detail)
        row = {
            "entry_id": entry.id,
            "content_identifier": signature.content_identifier,
            "peer_org": signature.peer_org,
            "recipients": json.dumps(list(signature.recipients)),
            "signed_data": signature.signed_data,
            "basis": signature.basis,
            "created_at": now,
        }
        _INSERT_SIGNATURE.run(conn, row)


def await_receipts(
    conn: Connection,
    entry: Entry,
    results: Mapping[str, Reply],
    sent: Sequence[NewSignature],
    now: datetime,
) -> Entry:
    """Recipients relayed (2xx) under one of ``sent`` await a receipt until its window ends;
    ``entry`` with those recipients AWAITING."""
    windows: dict[str, timedelta] = {}
    for signature in reversed(sent):  # the first signature naming a recipient decides
        windows |= {address.casefold(): signature.window for address in signature.recipients}
    positions = {r.address.casefold(): (i, r.address) for i, r in enumerate(entry.recipients)}
    receipted = {
        r.address.casefold() for r in entry.recipients if r.receipt_state is ReceiptState.RECEIPTED
    }
    people = list(entry.recipients)
    for address, reply in results.items():
        window = windows.get(address.casefold())
        if not reply.ok or window is None or address.casefold() in receipted:
            continue  # a receipt that came before this 250 (see accept) stays
        position, spelling = positions[address.casefold()]
        values = {"receipt_state": ReceiptState.AWAITING, "receipt_deadline": now + window}
        UPDATE_RECIPIENT.run(conn, values | {"b_id": entry.id, "b_position": position})
        log_event(conn, entry.id, "relayed", now, recipient=spelling, detail="receipt requested")
        people[position] = replace(people[position], receipt_state=ReceiptState.AWAITING)
    return replace(entry, recipients=tuple(people))


def find_signature(conn: Connection, content_identifier: str) -> SentSignature | None:
    """The stored signature with this contentIdentifier (hex, any case), or None."""
    rows = _SIGNATURE.rows(conn, {"b_content_identifier": content_identifier.lower()})
    return _signatures(rows)[0] if rows else None


def select_signatures(conn: Connection, where: ColumnElement[bool]) -> list[SentSignature]:
    """Stored signatures matching ``where``, oldest first."""
    return _signatures(conn.execute(select(signatures).where(where).order_by(signatures.c.id)))


def _signatures(rows: Iterable[Any]) -> list[SentSignature]:
    return [
        SentSignature(
            entry_id=r.entry_id,
            content_identifier=r.content_identifier,
            peer_org=r.peer_org,
            recipients=tuple(json.loads(r.recipients)),
            signed_data=bytes(r.signed_data),
            basis=r.basis,
            created_at=r.created_at,
        )
        for r in rows
    ]


def accept(
    conn: Connection,
    signature: SentSignature,
    recipient: str,
    *,
    receipt: bytes,
    evidence: str,
    now: datetime,
) -> ReceiptOutcome:
    """Apply one recipient's receipt for ``signature`` (see the module for the states)."""
    if not _names(signature.recipients, recipient):
        return ReceiptOutcome.UNKNOWN
    row = _lock_recipient(conn, signature.entry_id, recipient)
    state = ReceiptState(row.receipt_state) if row is not None else ReceiptState.NONE
    if state is ReceiptState.RECEIPTED:
        return ReceiptOutcome.DUPLICATE
    detail = f"content identifier {signature.content_identifier}"
    if row is not None and state is ReceiptState.NONE and _still_pending(row):
        # The peer delivered a copy whose 250 we never saw (a lost reply): its genuine
        # receipt arrives while we still retry. It is the proof; take it (THREATS.md A).
        state = ReceiptState.AWAITING
    if row is None or state is not ReceiptState.AWAITING:
        why = f"receipt state {state}" if row is not None else "entry no longer queued"
        spelling = row.address if row is not None else recipient
        late = f"{detail}; {why}"
        log_event(conn, signature.entry_id, "receipt-late", now, recipient=spelling, detail=late)
        return ReceiptOutcome.LATE
    values = {
        "receipt_state": ReceiptState.RECEIPTED,
        "receipted_at": now,
        "receipt": receipt,
        "evidence": evidence,
    }
    UPDATE_RECIPIENT.run(conn, values | {"b_id": row.entry_id, "b_position": row.position})
    log_event(conn, row.entry_id, "receipted", now, recipient=row.address, detail=detail)
    return ReceiptOutcome.ACCEPTED


def _still_pending(row: Any) -> bool:
    return bool(row.disposition == Disposition.PENDING)


def expire(conn: Connection, entry_id: str, recipient: str, now: datetime) -> bool:
    """AWAITING → EXPIRED; False when the recipient awaits no receipt (any more)."""
    row = _lock_recipient(conn, entry_id, recipient)
    if row is None or row.receipt_state != ReceiptState.AWAITING:
        return False
    expired = {"receipt_state": ReceiptState.EXPIRED, "b_id": entry_id, "b_position": row.position}
    UPDATE_RECIPIENT.run(conn, expired)
    detail = f"no receipt by {row.receipt_deadline.isoformat()}"
    log_event(conn, entry_id, "receipt-expired", now, recipient=row.address, detail=detail)
    return True


def select_records(
    conn: Connection, where: ColumnElement[bool], limit: int, *, by_deadline: bool = False
) -> list[ReceiptRecord]:
    """Recipients' receipt tracking matching ``where``, in arrival or deadline order."""
    query = (
        select(recipients, messages.c.message_id, messages.c.mail_from)
        .join(messages, messages.c.id == recipients.c.entry_id)
        .where(where)
        .order_by(*((recipients.c.receipt_deadline,) if by_deadline else ()), *_RECORD_ORDER)
        .limit(limit)
    )
    return [_record(r) for r in conn.execute(query)]


def _record(r: Row[Any]) -> ReceiptRecord:
    return ReceiptRecord(
        entry_id=r.entry_id,
        message_id=r.message_id,
        mail_from=r.mail_from,
        recipient=r.address,
        state=ReceiptState(r.receipt_state),
        deadline=r.receipt_deadline,
        receipted_at=r.receipted_at,
        receipt=None if r.receipt is None else bytes(r.receipt),
        evidence=r.evidence,
    )


def _lock_recipient(conn: Connection, entry_id: str, address: str) -> Any | None:
    """The recipient's row, locked for this transaction; None if the entry has no such one."""
    wanted = address.casefold()
    for position, spelling in _POSITIONS.rows(conn, {"b_id": entry_id}):
        if spelling.casefold() == wanted:
            return _LOCK_RECIPIENT.first(conn, {"b_id": entry_id, "b_position": position})
    return None


def _names(addresses: Iterable[str], address: str) -> bool:
    return address.casefold() in {a.casefold() for a in addresses}
