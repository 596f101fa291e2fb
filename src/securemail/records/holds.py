"""Legal holds: what they cover is not disposed of until they are released.

A hold names an address (every record and queue entry about it: as sender, recipient or
subject) or a Message-ID, and a reason. Placing and releasing one are themselves records
(class security), so the log shows when a hold stood.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select, update

from securemail.records.chain import NewRecord, RecordClass, append
from securemail.records.errors import RecordsError, RecordsReason
from securemail.records.schema import holds
from securemail.storage.engine import transaction


@dataclass(frozen=True)
class Hold:
    id: str
    address: str | None
    message_id: str | None
    reason: str
    placed: datetime
    released: datetime | None = None


def place(
    engine: Engine,
    *,
    address: str | None,
    message_id: str | None,
    reason: str,
    now: datetime,
    by: str,
) -> Hold:
    """Place a hold on ``address`` or ``message_id`` (one of them), recorded."""
    if bool(address) == bool(message_id) or not reason.strip():
        detail = "a hold names one --address or one --message-id, and a --reason"
        raise RecordsError(RecordsReason.BAD_HOLD, detail)
    hold = Hold(secrets.token_hex(8), address.lower() if address else None, message_id, reason, now)
    with transaction(engine, "records hold", write=True) as conn:
        values = {k: getattr(hold, k) for k in ("id", "address", "message_id", "reason")}
        conn.execute(holds.insert().values(values | {"placed": now}))
        _record(conn, "records.hold-placed", hold, now, by)
    return hold


def release(engine: Engine, hold_id: str, *, now: datetime, by: str) -> Hold:
    """Release the hold ``hold_id``; recorded. RecordsError NO_HOLD if none stands."""
    with transaction(engine, "records release", write=True) as conn:
        found = [h for h in standing(conn) if h.id == hold_id]
        if not found:
            raise RecordsError(RecordsReason.NO_HOLD, f"no standing hold {hold_id}")
        conn.execute(update(holds).where(holds.c.id == hold_id).values(released=now))
        _record(conn, "records.hold-released", found[0], now, by)
    return found[0]


def listed(conn: Connection, *, all_holds: bool = False) -> list[Hold]:
    """Standing holds (or every hold ever placed), oldest first."""
    query = select(holds).order_by(holds.c.placed, holds.c.id)
    if not all_holds:
        query = query.where(holds.c.released.is_(None))
    return [
        Hold(r.id, r.address, r.message_id, r.reason, r.placed, r.released)
        for r in conn.execute(query)
    ]


def standing(conn: Connection) -> list[Hold]:
    return listed(conn)


def _record(conn: Connection, event: str, hold: Hold, now: datetime, by: str) -> None:
    details = {"hold": hold.id, "reason": hold.reason, "by": by}
    news = NewRecord(
        now,
        RecordClass.SECURITY,
        event,
        subjects=(hold.address,) if hold.address else (),
        message_id=hold.message_id,
        details=details,
    )
    append(conn, [news])
