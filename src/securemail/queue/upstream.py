"""The queue's view of an upstream queue node's backlog: ciphertext it holds for members.

Entries of kind ``upstream`` are mail a member's gateway could not take, held here for it
(``org_id`` is that member) until its gateway answers. Every method is one transaction and
none reads the clock.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select, update

from securemail.queue.model import FINAL_STATES, Entry, State
from securemail.queue.schema import log_event, messages, select_entries
from securemail.queue.transactions import Transactions

UPSTREAM = "upstream"  # the entry kind
_WAITING = messages.c.state.notin_([s.value for s in FINAL_STATES])


@dataclass(frozen=True)
class Backlog:
    """What an upstream queue holds for one member: how many messages, since when."""

    org_id: str
    waiting: int
    octets: int
    oldest: datetime


class UpstreamBacklog(Protocol):
    """What the upstream queue role and the operator's tools use; see :class:`UpstreamRows`."""

    def backlog(self) -> builtins.list[Backlog]: ...

    def hasten(self, org_id: str, now: datetime) -> int: ...

    def upstream_delayed(self, older_than: datetime, limit: int = 200) -> builtins.list[Entry]: ...


class UpstreamRows(Transactions):
    """The upstream queue's part of the store."""

    def backlog(self) -> builtins.list[Backlog]:
        """Per member, the messages not yet handed to its gateway (nor given up)."""
        query = (
            select(
                messages.c.org_id,
                func.count(),
                func.coalesce(func.sum(messages.c.size), 0),
                func.min(messages.c.created_at),
            )
            .where((messages.c.kind == UPSTREAM) & _WAITING)
            .group_by(messages.c.org_id)
            .order_by(messages.c.org_id)
        )
        with self._read("backlog") as conn:
            rows = conn.execute(query).all()
        # min() keeps the column's type: a UTC datetime on both engines
        return [Backlog(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]

    def hasten(self, org_id: str, now: datetime) -> int:
        """The member's deferred upstream entries become due now (its gateway answers)."""
        due = (
            (messages.c.kind == UPSTREAM)
            & (messages.c.org_id == org_id)
            & (messages.c.state == State.DEFERRED)
            & (messages.c.next_attempt_at > now)
        )
        with self._write("hasten") as conn:
            ids = builtins.list(conn.scalars(select(messages.c.id).where(due).with_for_update()))
            if ids:
                chosen = messages.c.id.in_(ids)
                conn.execute(update(messages).where(chosen).values(next_attempt_at=now))
            for entry_id in ids:
                log_event(conn, entry_id, "hastened", now, detail=f"{org_id}'s gateway answers")
        return len(ids)

    def upstream_delayed(self, older_than: datetime, limit: int = 200) -> builtins.list[Entry]:
        """Upstream entries waiting since before ``older_than`` whose sender was not told."""
        where = (
            (messages.c.kind == UPSTREAM)
            & (messages.c.state == State.DEFERRED)
            & messages.c.warned.is_(False)
            & (messages.c.created_at <= older_than)
            & (messages.c.mail_from != "")
        )
        with self._read("upstream_delayed") as conn:
            return select_entries(conn, where, limit)
