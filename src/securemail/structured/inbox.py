"""The pull queue: documents kept in the node's database until the application takes them.

An organisation whose ``[organisation.structured] kind = "pull"`` has its documents stored
here (one row per delivery id, the envelope of :mod:`securemail.structured.target`); its
application lists them with ``GET /api/v1/structured/inbox`` and says it has one with
``POST /api/v1/structured/inbox/{key}/taken``. A taken row stays ``[structured]
keep_taken`` (for the operator's questions), then the node's purge loop deletes it. Every
method of :class:`PullInbox` is one transaction; it never reads the clock (``now`` is
passed in). The node opens one :class:`PullInbox` and closes it when it stops.

Security: rows hold cleartext documents (like the Maildirs); the API shows an account only
its own organisation's rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)

from securemail.queue.threads import RunOffLoop
from securemail.replies import Reply, ok, temporary
from securemail.storage.dialect import insert_new
from securemail.storage.engine import transaction
from securemail.storage.errors import StorageError
from securemail.storage.types import UtcDateTime

metadata = MetaData()
structured_inbox = Table(
    "structured_inbox",
    metadata,
    Column("key", String(64), primary_key=True),  # SHA-256 (hex) of the delivery id
    Column("org_id", String(64), nullable=False),
    Column("delivery_id", Text, nullable=False),
    Column("envelope", Text, nullable=False),  # the JSON envelope, document included
    Column("stored_at", UtcDateTime, nullable=False),
    Column("taken_at", UtcDateTime),  # when the application said it has it
    Index("ix_structured_inbox_org", "org_id", "taken_at"),
)
MAX_PAGE = 100
PURGE_BATCH = 500  # rows deleted in one transaction: short locks on a busy node


def key_of(delivery_id: str) -> str:
    return hashlib.sha256(delivery_id.encode()).hexdigest()


class PullInbox:
    """The documents waiting for each organisation's application."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, org_id: str, envelope: dict[str, Any], now: datetime) -> bool:
        """Keep ``envelope``; False if its delivery id was kept already (stored once)."""
        row = {
            "key": key_of(envelope["delivery_id"]),
            "org_id": org_id,
            "delivery_id": envelope["delivery_id"],
            "envelope": json.dumps(envelope, sort_keys=True),
            "stored_at": now,
        }
        with transaction(self._engine, "inbox-put", write=True) as conn:
            added = insert_new(conn, structured_inbox, **row)
            return conn.execute(added.returning(structured_inbox.c.key)).first() is not None

    def waiting(self, org_id: str, limit: int = MAX_PAGE) -> list[dict[str, Any]]:
        """The oldest envelopes ``org_id``'s application has not taken, each with its key."""
        table = structured_inbox
        query = (
            select(table.c.key, table.c.envelope)
            .where((table.c.org_id == org_id) & table.c.taken_at.is_(None))
            .order_by(table.c.stored_at, table.c.key)
            .limit(min(limit, MAX_PAGE))
        )
        with transaction(self._engine, "inbox-waiting", write=False) as conn:
            return [{"key": k, **json.loads(e)} for k, e in conn.execute(query)]

    def take(self, org_id: str, key: str, now: datetime) -> bool:
        """Mark one envelope taken; False if ``org_id`` has no such waiting envelope."""
        table = structured_inbox
        mine = (table.c.key == key) & (table.c.org_id == org_id) & table.c.taken_at.is_(None)
        with transaction(self._engine, "inbox-take", write=True) as conn:
            return conn.execute(update(table).where(mine).values(taken_at=now)).rowcount == 1

    def purge_taken(self, older_than: datetime, *, limit: int = PURGE_BATCH) -> int:
        """Delete at most ``limit`` rows taken before ``older_than``; how many went. Rows
        not taken stay whatever their age: the application has not got them yet."""
        table = structured_inbox
        old = select(table.c.key).where(table.c.taken_at < older_than).limit(limit)
        with transaction(self._engine, "inbox-purge", write=True) as conn:
            keys = [k for (k,) in conn.execute(old)]
            if not keys:
                return 0
            return conn.execute(delete(table).where(table.c.key.in_(keys))).rowcount

    def close(self) -> None:
        """Close the inbox's connections (the node does, when it stops)."""
        self._engine.dispose()


class PullQueue:
    """See :class:`securemail.structured.webhook.Application`: rows in :class:`PullInbox`."""

    keeps_one_copy = True  # one row per delivery id

    def __init__(
        self,
        inbox: PullInbox,
        org_id: str,
        clock: Callable[[], datetime],
        db: RunOffLoop,
    ) -> None:
        self.inbox, self.org_id, self.clock, self.db = inbox, org_id, clock, db

    async def deliver(self, envelope: dict[str, Any], document: bytes) -> Reply:
        try:
            await self.db(self.inbox.put, self.org_id, envelope, self.clock())
        except StorageError as error:
            return temporary("structured-target-unavailable", f"pull queue: {error.detail}")
        return ok("kept for the application to pull")
