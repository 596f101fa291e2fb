"""The queue manager: receive services admit, workers claim, try and complete or defer.

Theory of operation. ``enqueue`` returning is the durability point (the caller sends 250
only then). Workers ``claim`` due entries, which moves them to ACTIVE in the same
transaction that selects them (PostgreSQL ``FOR UPDATE SKIP LOCKED``, SQLite ``BEGIN
IMMEDIATE``), so two workers, or two nodes sharing one PostgreSQL database, never try the
same entry at once. An attempt ends with ``record`` or ``defer`` (see
:func:`securemail.queue.retry.settle`), or ``quarantine``. Entries a crash left ACTIVE come
back with ``recover`` at start; each claim names its node, so with several nodes on one
PostgreSQL database a starting node takes back only its own (node names must be unique).
``record`` also stores the signatures that requested receipts, the idempotency keys of
what was delivered and the follow-up notices, in the attempt's transaction.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, bindparam, func, select, update

from securemail.queue import eventlog, tracking
from securemail.queue.claims import claim_entries
from securemail.queue.dedup import record_delivered
from securemail.queue.model import (
    FINAL_STATES,
    Attempt,
    Direction,
    Entry,
    NewMessage,
    NewSignature,
    QueueError,
    QueueReason,
    ReceiptState,
    State,
)
from securemail.queue.retry import settle
from securemail.queue.schema import (
    ORDER,
    events,
    follow_up,
    insert_entries,
    lock_entry,
    log_event,
    messages,
    recipients,
    select_entries,
    write_settlement,
)
from securemail.queue.transactions import Transactions
from securemail.replies import Reply
from securemail.storage.dialect import durability

LIVE_STATES = frozenset(State) - FINAL_STATES
_QUARANTINED_FROM = select(func.count()).where(
    (messages.c.state == State.QUARANTINED)
    & (messages.c.updated_at >= bindparam("b_since"))
    & (messages.c.client == bindparam("b_client"))
)
# How long a claim holds without renewal. A worker renews every third of it, so only a
# process that died (or stalled for this long) loses its entries to another.
DEFAULT_LEASE = timedelta(seconds=60)


class QueueManager(Protocol):
    """The queue as the listeners and workers use it: admit, claim, complete or defer.

    Contract:

    - every method is one database transaction, and none reads the clock (``now`` is given);
    - ``enqueue``/``enqueue_many`` return only once the entries are committed: the caller
      may answer 250 then, never before; a database failure is QueueError UNAVAILABLE
      (answer 451);
    - ``claim`` moves due entries to ACTIVE, names ``owner`` on them and leases them for
      ``lease`` (with ``bodies``, each entry carries its body); no two claims, in any
      process or node sharing the database, return the same entry while its lease
      holds; once it expired (the holder died, or stalled past it without ``renew``),
      any claim may take the entry over: nothing is left behind for an operator to
      recover;
    - ``renew`` extends the leases the owner still holds, and says which those are;
    - ``record``/``record_many``/``defer`` settle an ACTIVE entry's attempt (per recipient:
      delivered, bounced or still pending with its next attempt); what rides an attempt
      (events, idempotency keys, signatures, follow-up notices) commits with it or not at
      all; an entry not ACTIVE any more is QueueError BAD_STATE and nothing is written;
    - fencing: given the ``holder`` (``Attempt.holder``, ``Entry.claimed_by`` of the
      claim the attempt was made under), ``record``/``record_many``/``defer``/``quarantine``
      check in their transaction, under the entry's row lock, that this claim still holds
      the entry; if another process took it over (its lease expired) or it went back to the
      queue, they are QueueError LEASE_LOST and nothing is written: a stale worker never
      overwrites the outcome of the process that took its work over;
    - ``quarantine`` sets a live entry aside with its body, never deletes it;
    - ``recover`` returns entries a dead process left ACTIVE to the queue, due now;
    - ``quarantined_from`` counts the entries from ``client`` (as the listener named it,
      ``peer 192.0.2.1``) quarantined since ``since`` and still quarantined;
    - ``waiting`` counts the entries no worker has taken yet (INCOMING), for in-flow
      control (securemail.receive.flow).
    """

    def durability(self) -> dict[str, str]: ...

    def waiting(self) -> int: ...

    def enqueue(self, new: NewMessage, now: datetime) -> str: ...

    def enqueue_many(self, news: Sequence[NewMessage], now: datetime) -> list[str]: ...

    def claim(
        self,
        direction: Direction,
        now: datetime,
        limit: int = 16,
        *,
        owner: str = "",
        lease: timedelta = DEFAULT_LEASE,
        bodies: bool = False,
    ) -> list[Entry]: ...

    def renew(
        self, entry_ids: Sequence[str], owner: str, now: datetime, lease: timedelta = DEFAULT_LEASE
    ) -> list[str]: ...

    def body(self, entry_id: str) -> bytes: ...

    def get(self, entry_id: str) -> Entry | None: ...

    def event_details(self, entry_id: str, event: str) -> list[str]: ...

    def record(
        self,
        entry_id: str,
        results: Mapping[str, Reply],
        now: datetime,
        *,
        events: Sequence[tuple[str, str]] = (),
        remember: Sequence[str] = (),
        signatures: Sequence[NewSignature] = (),
        enqueue: Sequence[NewMessage] = (),
        holder: str | None = None,
        relays: Mapping[str, str] | None = None,
    ) -> Entry: ...

    def record_many(self, attempts: Sequence[Attempt], now: datetime) -> list[Entry]: ...

    def defer(
        self, entry_id: str, reply: Reply, now: datetime, *, holder: str | None = None
    ) -> Entry: ...

    def quarantine(
        self, entry_id: str, reason: str, detail: str, now: datetime, *, holder: str | None = None
    ) -> Entry: ...

    def recover(self, now: datetime, *, owner: str | None = None) -> int: ...

    def quarantined_from(self, client: str, since: datetime) -> int: ...

    def purge_bodies(self, older_than: datetime, now: datetime, *, limit: int = 500) -> int: ...

    def warnings_due(self, now: datetime, limit: int = 200) -> list[Entry]: ...

    def mark_warned(self, entry_id: str, now: datetime) -> Entry: ...

    def add_event(
        self,
        entry_id: str,
        event: str,
        now: datetime,
        *,
        recipient: str | None = None,
        reason: str = "",
        detail: str = "",
    ) -> None: ...


_WAITING = select(func.count()).select_from(messages).where(messages.c.state == State.INCOMING)


class ManagerRows(Transactions):
    """The queue manager in SQL. See :class:`QueueManager`."""

    def durability(self) -> dict[str, str]:
        """The database's durability settings as it reports them (for status and checks)."""
        with self._read("durability") as conn:
            return durability(conn)

    def waiting(self) -> int:
        """How many entries wait for their first claim (INCOMING): the workers' backlog."""
        with self._read("waiting") as conn:
            return int(conn.execute(_WAITING).scalar_one())

    def enqueue(self, new: NewMessage, now: datetime) -> str:
        """Store an accepted message; its id once committed (only then may 250 be sent)."""
        return self.enqueue_many([new], now)[0]

    def enqueue_many(self, news: Sequence[NewMessage], now: datetime) -> builtins.list[str]:
        """Store several accepted messages in one transaction (group commit): all or none."""
        with self._write("enqueue") as conn:
            return insert_entries(conn, news, now)

    def claim(
        self,
        direction: Direction,
        now: datetime,
        limit: int = 16,
        *,
        owner: str = "",
        lease: timedelta = DEFAULT_LEASE,
        bodies: bool = False,
    ) -> builtins.list[Entry]:
        """Move up to ``limit`` due entries of ``direction`` to ACTIVE: lowest priority
        value first (SecureMail before ordinary mail), then oldest first.

        ``owner`` names the claiming process (``node/pid``); the claim is a lease until
        ``now + lease`` (see :meth:`renew`). Due are INCOMING and DEFERRED entries whose
        time has come, and ACTIVE entries whose lease expired: their holder died (or stalled
        past its lease), and the entry is taken over with a "lease-expired" event.
        With ``bodies``, each entry comes with its body (:attr:`Entry.body`).
        """
        with self._write("claim") as conn:
            return claim_entries(conn, direction, now, limit, owner, lease, bodies)

    def renew(
        self,
        entry_ids: Sequence[str],
        owner: str,
        now: datetime,
        lease: timedelta = DEFAULT_LEASE,
    ) -> builtins.list[str]:
        """Extend ``owner``'s leases on ``entry_ids`` to ``now + lease``; the ids it still
        holds (an entry missing was settled, or taken over after its lease expired)."""
        if not entry_ids:
            return []
        mine = (
            messages.c.id.in_(entry_ids)
            & (messages.c.state == State.ACTIVE)
            & (messages.c.claimed_by == owner)
        )
        with self._write("renew") as conn:
            held = builtins.list(conn.scalars(select(messages.c.id).where(mine)))
            if held:
                conn.execute(
                    update(messages).where(messages.c.id.in_(held)).values(lease_until=now + lease)
                )
            return held

    def body(self, entry_id: str) -> bytes:
        with self._read("body") as conn:
            body = conn.scalar(select(messages.c.body).where(messages.c.id == entry_id))
        if body is None:
            raise QueueError(QueueReason.NOT_FOUND, f"no queue entry {entry_id}")
        return bytes(body)

    def get(self, entry_id: str) -> Entry | None:
        with self._read("get") as conn:
            found = select_entries(conn, messages.c.id == entry_id, 1)
        return found[0] if found else None

    def event_details(self, entry_id: str, event: str) -> builtins.list[str]:
        """The details of ``entry_id``'s events named ``event``, oldest first (e.g. what the
        inbound worker recorded when it vouched for a sender: securemail.bounces)."""
        query = (
            select(events.c.detail)
            .where(events.c.entry_id == entry_id, events.c.event == event)
            .order_by(events.c.id)
        )
        with self._read("event_details") as conn:
            return [str(detail) for detail in conn.scalars(query)]

    def record(
        self,
        entry_id: str,
        results: Mapping[str, Reply],
        now: datetime,
        *,
        events: Sequence[tuple[str, str]] = (),
        remember: Sequence[str] = (),
        signatures: Sequence[NewSignature] = (),
        enqueue: Sequence[NewMessage] = (),
        holder: str | None = None,
        relays: Mapping[str, str] | None = None,
    ) -> Entry:
        """Record one attempt's per-recipient replies; returns the entry as it now stands.

        In the same transaction (one commit per attempt, not one per fact): ``events`` (name,
        detail) are added to the history, ``remember`` keys stored (see
        :meth:`securemail.queue.dedup.Deduplication.remember`), ``signatures`` stored, and
        each recipient relayed (2xx) under one of them awaits a receipt until the
        signature's window ends; ``enqueue`` messages (notices) are queued, their ids noted
        in a "queued-follow-up" event; ``relays`` (recipient: ``host:port``) go to the log
        lines only. Anything failing records nothing. ``holder`` fences
        the record (see :class:`Attempt`).

        The fence is the claim, not the clock: a lease that expired but was not taken over
        still holds (no other process tried the entry, since a takeover rewrites
        ``claimed_by`` under the row lock this transaction takes), and refusing its outcome
        would only have the entry tried, and perhaps delivered, again.
        """
        attempt = Attempt(
            entry_id,
            results,
            tuple(events),
            tuple(remember),
            tuple(signatures),
            tuple(enqueue),
            holder=holder,
            relays=tuple((relays or {}).items()),
        )
        return self._attempt(entry_id, lambda entry: results, now, attempt)

    def record_many(self, attempts: Sequence[Attempt], now: datetime) -> builtins.list[Entry]:
        """Record several attempts in one transaction (group commit): all or none.

        A caller whose batch is refused (one entry in a bad state) records them one by one.
        """
        with self._write("record") as conn:
            return [self._settle(conn, a.entry_id, _results_of(a), now, a) for a in attempts]

    def defer(
        self, entry_id: str, reply: Reply, now: datetime, *, holder: str | None = None
    ) -> Entry:
        """Record a whole-attempt temporary failure (peer down) for every pending recipient
        (fenced by ``holder`` as :meth:`record` is)."""
        if not reply.temporary:
            raise ValueError(f"defer needs a temporary (4xx) reply, not {reply.code}")
        attempt = Attempt(entry_id, {}, holder=holder)
        return self._attempt(
            entry_id,
            lambda entry: dict.fromkeys(entry.pending(), reply),
            now,
            attempt,
            release=False,
        )

    def quarantine(
        self, entry_id: str, reason: str, detail: str, now: datetime, *, holder: str | None = None
    ) -> Entry:
        """Set aside a live entry that cannot be read or verified; kept with its body
        (fenced by ``holder`` as :meth:`record` is)."""
        changes = {"state": State.QUARANTINED, "next_attempt_at": None, "reason": reason[:64]}
        return self._move(
            entry_id,
            LIVE_STATES,
            "quarantined",
            now,
            changes,
            reason=reason,
            detail=detail,
            holder=holder,
        )

    def purge_bodies(self, older_than: datetime, now: datetime, *, limit: int = 500) -> int:
        """Drop the bodies of up to ``limit`` entries whose outcome is final; how many.

        Final: DELIVERED or BOUNCED, last changed before ``older_than``, and no recipient
        still awaiting a receipt (its expiry notice quotes the body's header). The entry,
        its recipients, history, signatures (the evidence) and receipts stay; the body's
        SHA-256 and size go into a "body-purged" event. QUARANTINED bodies are evidence and
        stay. The body of mail we sent is cleartext: it should not outlive its use.
        """
        awaiting = select(recipients.c.entry_id).where(
            recipients.c.receipt_state == ReceiptState.AWAITING
        )
        due = (
            messages.c.state.in_([State.DELIVERED, State.BOUNCED])
            & (messages.c.updated_at < older_than)
            & (func.length(messages.c.body) > 0)
            & ~messages.c.id.in_(awaiting)
        )
        with self._write("purge_bodies") as conn:
            query = select(messages.c.id, messages.c.body).where(due).order_by(*ORDER)
            rows = conn.execute(query.limit(limit).with_for_update()).all()
            for row in rows:
                body = bytes(row.body)
                digest = hashlib.sha256(body).hexdigest()
                detail = f"sha256:{digest}, {len(body)} octets"
                log_event(conn, row.id, "body-purged", now, detail=detail)
            if rows:
                chosen = messages.c.id.in_([row.id for row in rows])
                conn.execute(update(messages).where(chosen).values(body=b""))
        return len(rows)

    def recover(self, now: datetime, *, owner: str | None = None) -> int:
        """Entries a crash left ACTIVE become due now, without waiting for their leases.

        With ``owner`` (a node's name at its start, or ``node/pid`` of a worker process
        that died), only the entries claimed by it or by one of its processes
        (``owner/…``), and ones claimed before claims were named: nodes sharing one
        database then never take back each other's work in hand. Without it, every active
        entry (an operator's decision, for a node gone for good).
        """
        with self._write("recover") as conn:
            active = select(messages.c.id).where(messages.c.state == State.ACTIVE)
            if owner is not None:
                mine = (messages.c.claimed_by == owner) | messages.c.claimed_by.startswith(
                    f"{owner}/", autoescape=True
                )
                active = active.where(mine | messages.c.claimed_by.is_(None))
            ids = builtins.list(conn.scalars(active.with_for_update()))
            if ids:
                conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(ids))
                    .values(
                        state=State.DEFERRED,
                        next_attempt_at=now,
                        updated_at=now,
                        claimed_by=None,  # its old holder, if it still runs, is fenced out
                        lease_until=None,
                    )
                )
            for entry_id in ids:
                log_event(conn, entry_id, "recovered", now, detail="was active at start")
        return len(ids)

    def quarantined_from(self, client: str, since: datetime) -> int:
        """Entries from ``client`` quarantined since ``since`` (the peer listener's
        quarantine quota, receive.door: the same count in every process and node)."""
        with self._read("quarantined_from") as conn:
            found = conn.scalar(_QUARANTINED_FROM, {"b_client": client, "b_since": since})
        return int(found or 0)

    def warnings_due(self, now: datetime, limit: int = 200) -> builtins.list[Entry]:
        """Deferred entries older than ``warn_after`` whose sender was not warned yet.

        Notices and null-sender mail never get a notice (RFC 5321 §4.5.5), so never appear;
        nor do an upstream queue's entries, which have their own delay (queue.upstream).
        """
        where = (
            (messages.c.state == State.DEFERRED)
            & messages.c.warned.is_(False)
            & (messages.c.created_at <= now - self._retry.warn_after)
            & messages.c.kind.notin_(["notice", "upstream"])
            & (messages.c.mail_from != "")
        )
        with self._read("warnings_due") as conn:
            return select_entries(conn, where, limit)

    def mark_warned(self, entry_id: str, now: datetime) -> Entry:
        """Note that the sender was told of the delay (whatever the entry's state now)."""
        return self._move(entry_id, State, "warned", now, {"warned": True})

    def add_event(
        self,
        entry_id: str,
        event: str,
        now: datetime,
        *,
        recipient: str | None = None,
        reason: str = "",
        detail: str = "",
    ) -> None:
        """Append to an entry's history (e.g. "notice-sent"); the entry must exist."""
        with self._write("add_event") as conn:
            if conn.scalar(select(messages.c.id).where(messages.c.id == entry_id)) is None:
                raise QueueError(QueueReason.NOT_FOUND, f"no queue entry {entry_id}")
            log_event(conn, entry_id, event, now, recipient=recipient, reason=reason, detail=detail)

    def _attempt(
        self,
        entry_id: str,
        results_for: Callable[[Entry], Mapping[str, Reply]],
        now: datetime,
        attempt: Attempt | None = None,
        *,
        release: bool = True,
    ) -> Entry:
        """Settle an ACTIVE entry's attempt (see :func:`settle`) in one transaction;
        ``release`` as :func:`securemail.queue.dedup.record_delivered` takes it."""
        with self._write("record") as conn:
            return self._settle(conn, entry_id, results_for, now, attempt, release=release)

    def _settle(
        self,
        conn: Connection,
        entry_id: str,
        results_for: Callable[[Entry], Mapping[str, Reply]],
        now: datetime,
        attempt: Attempt | None,
        *,
        release: bool = True,
    ) -> Entry:
        holder = attempt.holder if attempt is not None else None
        entry = lock_entry(conn, entry_id, {State.ACTIVE}, holder=holder)
        eventlog.note_known(conn, entry)  # the log lines' heads, without reading them again
        results = results_for(entry)
        pending = {address.casefold() for address in entry.pending()}
        for address in results:
            if address.casefold() not in pending:
                detail = f"{entry_id}: {address} is not a pending recipient"
                raise QueueError(QueueReason.BAD_STATE, detail)
        attempt = attempt or Attempt(entry_id, results)
        eventlog.note_relays(conn, entry_id, dict(attempt.relays))
        for event, detail in attempt.events:  # e.g. "verified"
            log_event(conn, entry_id, event, now, detail=detail)
        settled = write_settlement(conn, entry, settle(self._retry, entry, results, now), now)
        tracking.store_signatures(conn, entry, attempt.signatures, now)
        settled = tracking.await_receipts(conn, settled, results, attempt.signatures, now)
        release = release and entry.direction is Direction.INBOUND
        if not record_delivered(conn, attempt.remember, entry_id, now, release=release):
            detail = f"{entry_id}: a copy was recorded delivered under the same key"
            raise QueueError(QueueReason.BAD_STATE, detail)
        follow_up(conn, entry_id, attempt.enqueue, now)
        return settled  # as it now stands: made from what was written, not read back


def _results_of(attempt: Attempt) -> Callable[[Entry], Mapping[str, Reply]]:
    return lambda entry: attempt.results
