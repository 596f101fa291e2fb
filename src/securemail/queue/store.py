"""The durable queue: receive services enqueue, workers claim and record, operators steer.

Theory of operation. Every public method is one database transaction, so an entry is
always whole: its row, body, recipients and the event that explains its state change
commit together or not at all. ``enqueue`` returning is the durability point (the caller
sends 250 only then). Workers ``claim`` due entries, which moves them to ACTIVE in the same
transaction that selects them (PostgreSQL ``FOR UPDATE SKIP LOCKED``, SQLite ``BEGIN
IMMEDIATE``), so two workers, or two nodes sharing one PostgreSQL database, never try the
same entry at once. An attempt ends with ``record`` or ``defer`` (see
:func:`securemail.queue.retry.settle`), or ``quarantine``. Entries a crash left ACTIVE come
back with ``recover`` at start; each claim names its node, so with several nodes on one
PostgreSQL database a starting node takes back only its own (node names must be unique).
``record`` also stores the signatures that requested receipts and enqueues follow-up
notices in the attempt's transaction; receipts then settle each recipient once (see
:mod:`securemail.queue.tracking`).

Security: bodies, envelopes and client names are untrusted values: stored only through
bound parameters and blobs, never pickled, never interpolated into SQL. Errors and logs
never carry a body or an address list (SQLAlchemy's parameters are hidden); a database
failure is a QueueError UNAVAILABLE, which callers turn into a temporary reply, never a 250.
The store never reads the clock: every change takes ``now``.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, select, true, update

from securemail import logbook
from securemail.queue import eventlog, tracking
from securemail.queue.model import (
    FINAL_STATES,
    Attempt,
    Direction,
    Disposition,
    Entry,
    Event,
    NewMessage,
    NewSignature,
    QueueError,
    QueueReason,
    ReceiptOutcome,
    ReceiptRecord,
    ReceiptState,
    SentSignature,
    State,
)
from securemail.queue.retry import RetryPolicy, settle
from securemail.queue.schema import (
    CLAIM_ORDER,
    ORDER,
    delivery_keys,
    events,
    head,
    lock_entry,
    log_event,
    message_row,
    messages,
    one_entry,
    recipients,
    select_entries,
    signatures,
    write_settlement,
)
from securemail.replies import Reply
from securemail.storage.dialect import durability, insert_new
from securemail.storage.engine import connect, transaction, upgrade
from securemail.storage.errors import StorageError, StorageReason

DEFAULT_RETRY = RetryPolicy()
LIVE_STATES = frozenset(State) - FINAL_STATES
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ALL = 10_000  # one Message-ID's entries: a bound, not a page
_EVIDENCE = recipients.c.receipt_state.in_([ReceiptState.RECEIPTED, ReceiptState.AWAITING])


class QueueStore:
    """The queue in one SQLite file or one PostgreSQL database; safe to share between threads."""

    def __init__(self, engine: Engine, retry: RetryPolicy) -> None:
        self._engine = engine
        self._retry = retry
        self._observers: builtins.list[Callable[[Sequence[logbook.QueueLine]], None]] = []

    def observe(self, observer: Callable[[Sequence[logbook.QueueLine]], None]) -> None:
        """Call ``observer`` with each write transaction's events once it committed (the
        lines the operations log writes; metrics count them)."""
        self._observers.append(observer)

    @classmethod
    def open(cls, url: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> QueueStore:
        """Connect to ``url``, check durability, migrate to the newest schema."""
        with _as_queue_error():
            engine = connect(url)
            try:
                upgrade(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine, retry)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> QueueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def durability(self) -> dict[str, str]:
        """The database's durability settings as it reports them (for status and checks)."""
        with self._read("durability") as conn:
            return durability(conn)

    def enqueue(self, new: NewMessage, now: datetime) -> str:
        """Store an accepted message; its id once committed (only then may 250 be sent)."""
        return self.enqueue_many([new], now)[0]

    def enqueue_many(self, news: Sequence[NewMessage], now: datetime) -> builtins.list[str]:
        """Store several accepted messages in one transaction (group commit): all or none."""
        with self._write("enqueue") as conn:
            return [_insert(conn, new, now) for new in news]

    def claim(
        self, direction: Direction, now: datetime, limit: int = 16, *, owner: str = ""
    ) -> builtins.list[Entry]:
        """Move up to ``limit`` due entries of ``direction`` to ACTIVE: lowest priority
        value first (SecureMail before ordinary mail), then oldest first.

        ``owner`` names the node that claims them (its configured name), so that after a
        crash that node recovers its own entries and no others (:meth:`recover`).
        """
        with self._write("claim") as conn:
            due = (
                select(messages.c.id)
                .where(messages.c.direction == direction)
                .where(messages.c.state.in_([State.INCOMING, State.DEFERRED]))
                .where(messages.c.next_attempt_at <= now)
                .order_by(*CLAIM_ORDER)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = builtins.list(conn.scalars(due))
            if not ids:
                return []
            conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids))
                .values(state=State.ACTIVE, updated_at=now, claimed_by=owner or None)
            )
            return select_entries(conn, messages.c.id.in_(ids), limit)

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

    def counts(self) -> dict[State, int]:
        """How many entries are in each state (every state present, zero included)."""
        query = select(messages.c.state, func.count()).group_by(messages.c.state)
        with self._read("counts") as conn:
            found = {State(state): count for state, count in conn.execute(query)}
        return {state: found.get(state, 0) for state in State}

    def depth(self) -> builtins.list[tuple[State, Direction, str, int]]:
        """How many entries there are by state, direction and reason code ("" for none)."""
        columns = (messages.c.state, messages.c.direction, messages.c.reason)
        with self._read("depth") as conn:
            rows = conn.execute(select(*columns, func.count()).group_by(*columns)).all()
        return [(State(s), Direction(d), reason or "", int(n)) for s, d, reason, n in rows]

    def receipt_counts(self) -> dict[ReceiptState, int]:
        """How many recipients there are in each receipt state other than NONE."""
        column = recipients.c.receipt_state
        query = select(column, func.count()).where(column != ReceiptState.NONE).group_by(column)
        with self._read("receipt_counts") as conn:
            return {ReceiptState(state): int(n) for state, n in conn.execute(query)}

    def events(self, entry_id: str) -> builtins.list[Event]:
        """An entry's history, oldest first (kept after an operator deleted the entry)."""
        query = select(events).where(events.c.entry_id == entry_id).order_by(events.c.id)
        with self._read("events") as conn:
            return [
                Event(r.entry_id, r.time, r.event, r.recipient, r.reason, r.detail)
                for r in conn.execute(query)
            ]

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
        relays: Mapping[str, str] | None = None,
    ) -> Entry:
        """Record one attempt's per-recipient replies; returns the entry as it now stands.

        In the same transaction (one commit per attempt, not one per fact): ``events`` (name,
        detail) are added to the history, ``remember`` keys stored (see :meth:`remember`),
        ``signatures`` stored, and each recipient relayed (2xx) under one of them awaits a
        receipt until the signature's window ends; ``enqueue`` messages (notices) are queued,
        their ids noted in a "queued-follow-up" event; ``relays`` (recipient: ``host:port``)
        go to the log lines only. Anything failing records nothing.
        """
        attempt = Attempt(
            entry_id,
            results,
            tuple(events),
            tuple(remember),
            tuple(signatures),
            tuple(enqueue),
            tuple((relays or {}).items()),
        )
        return self._attempt(entry_id, lambda entry: results, now, attempt)

    def record_many(self, attempts: Sequence[Attempt], now: datetime) -> builtins.list[Entry]:
        """Record several attempts in one transaction (group commit): all or none.

        A caller whose batch is refused (one entry in a bad state) records them one by one.
        """
        with self._write("record") as conn:
            return [self._settle(conn, a.entry_id, _results_of(a), now, a) for a in attempts]

    def defer(self, entry_id: str, reply: Reply, now: datetime) -> Entry:
        """Record a whole-attempt temporary failure (peer down) for every pending recipient."""
        if not reply.temporary:
            raise ValueError(f"defer needs a temporary (4xx) reply, not {reply.code}")
        return self._attempt(entry_id, lambda entry: dict.fromkeys(entry.pending(), reply), now)

    def quarantine(self, entry_id: str, reason: str, detail: str, now: datetime) -> Entry:
        """Set aside a live entry that cannot be read or verified; kept with its body."""
        changes = {"state": State.QUARANTINED, "next_attempt_at": None, "reason": reason[:64]}
        return self._move(
            entry_id, LIVE_STATES, "quarantined", now, changes, reason=reason, detail=detail
        )

    def hold(self, entry_id: str, now: datetime) -> Entry:
        """Stop delivery attempts until released (not while an attempt is running)."""
        changes = {"state": State.HELD, "next_attempt_at": None}
        return self._move(entry_id, {State.INCOMING, State.DEFERRED}, "held", now, changes)

    def release(self, entry_id: str, now: datetime) -> Entry:
        """A held entry becomes due now."""
        changes = {"state": State.DEFERRED, "next_attempt_at": now}
        return self._move(entry_id, {State.HELD}, "released", now, changes)

    def retry(self, entry_id: str, now: datetime) -> Entry:
        """A deferred or held entry becomes due now."""
        changes = {"state": State.DEFERRED, "next_attempt_at": now}
        return self._move(entry_id, {State.DEFERRED, State.HELD}, "retry", now, changes)

    def delete(self, entry_id: str, now: datetime) -> bool:
        """Remove an entry that is not being tried; False if there was none. History stays."""
        with self._write("delete") as conn:
            row = conn.execute(head(entry_id).with_for_update()).first()
            if row is None:
                return False
            if row.state == State.ACTIVE:
                raise QueueError(QueueReason.BAD_STATE, f"{entry_id} is being delivered")
            conn.execute(delete(messages).where(messages.c.id == entry_id))
            log_event(conn, entry_id, "deleted", now, detail=f"was {row.state}")
        return True

    def purge(
        self, states: Iterable[State], older_than: datetime, *, include_evidence: bool = False
    ) -> int:
        """Delete final entries (history and signatures too) last changed before ``older_than``.

        Only DELIVERED and BOUNCED, and QUARANTINED when named: quarantine is evidence. So
        are receipts: entries with a recipient RECEIPTED or AWAITING stay unless
        ``include_evidence``.
        """
        chosen = set(states)
        if not chosen <= FINAL_STATES:
            live = ", ".join(sorted(chosen - FINAL_STATES))
            raise QueueError(QueueReason.BAD_STATE, f"only final entries are purged, not {live}")
        if not chosen:
            return 0
        old = messages.c.state.in_(chosen) & (messages.c.updated_at < older_than)
        if not include_evidence:
            old = old & ~messages.c.id.in_(select(recipients.c.entry_id).where(_EVIDENCE))
        with self._write("purge") as conn:
            purged = select(messages.c.id).where(old)
            conn.execute(delete(events).where(events.c.entry_id.in_(purged)))
            conn.execute(delete(signatures).where(signatures.c.entry_id.in_(purged)))
            return conn.execute(delete(messages).where(old)).rowcount

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
        """At start: entries a crash left ACTIVE become due now.

        With ``owner``, only the entries that node claimed (and ones claimed before claims
        were named): nodes sharing one database then never take back each other's work in
        hand. Without it, every active entry (an operator's decision, for a node gone for good).
        """
        with self._write("recover") as conn:
            active = select(messages.c.id).where(messages.c.state == State.ACTIVE)
            if owner is not None:
                mine = messages.c.claimed_by == owner
                active = active.where(mine | messages.c.claimed_by.is_(None))
            ids = builtins.list(conn.scalars(active.with_for_update()))
            if ids:
                conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(ids))
                    .values(state=State.DEFERRED, next_attempt_at=now, updated_at=now)
                )
            for entry_id in ids:
                log_event(conn, entry_id, "recovered", now, detail="was active at start")
        return len(ids)

    def warnings_due(self, now: datetime, limit: int = 200) -> builtins.list[Entry]:
        """Deferred entries older than ``warn_after`` whose sender was not warned yet.

        Notices and null-sender mail never get a notice (RFC 5321 §4.5.5), so never appear.
        """
        where = (
            (messages.c.state == State.DEFERRED)
            & messages.c.warned.is_(False)
            & (messages.c.created_at <= now - self._retry.warn_after)
            & (messages.c.kind != "notice")
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

    def seen(self, key: str) -> bool:
        """Whether an idempotency key is stored (see :meth:`remember`)."""
        with self._read("seen") as conn:
            found = conn.scalar(select(delivery_keys.c.key).where(delivery_keys.c.key == key))
        return found is not None

    def remember(self, key: str, now: datetime) -> bool:
        """Store an idempotency key; False if it was stored before (already delivered)."""
        if not 0 < len(key) <= 512:
            raise ValueError("an idempotency key has 1 to 512 characters")
        with self._write("remember") as conn:
            insert = insert_new(conn, delivery_keys, key=key, stored_at=now)
            stored = conn.execute(insert.returning(delivery_keys.c.key)).first()
        return stored is not None

    def forget_before(self, when: datetime) -> int:
        """Drop idempotency keys stored before ``when``; how many."""
        with self._write("forget_before") as conn:
            return conn.execute(
                delete(delivery_keys).where(delivery_keys.c.stored_at < when)
            ).rowcount

    def signature(self, content_identifier: str) -> SentSignature | None:
        """The signature with this ESS contentIdentifier (hex, any case), or None."""
        with self._read("signature") as conn:
            return tracking.find_signature(conn, content_identifier)

    def signatures_for(self, entry_id: str) -> builtins.list[SentSignature]:
        """The signatures an entry's attempts made, oldest first (kept after a delete)."""
        with self._read("signatures_for") as conn:
            return tracking.select_signatures(conn, signatures.c.entry_id == entry_id)

    def accept_receipt(
        self,
        content_identifier: str,
        recipient: str,
        receipt: bytes,
        evidence: str,
        now: datetime,
        *,
        enqueue: Sequence[NewMessage] = (),
    ) -> ReceiptOutcome:
        """Settle one recipient's receipt: ACCEPTED once, then DUPLICATE; LATE or UNKNOWN.

        The caller has verified ``receipt`` (DER ESS signed receipt) against the signature;
        see :class:`ReceiptOutcome` and :mod:`securemail.queue.tracking` for the states.
        ``enqueue`` (the notice to the sender) is queued in the same commit, only if ACCEPTED:
        a crash cannot leave a receipted recipient whose sender is never told.
        """
        with self._write("accept_receipt") as conn:
            signature = tracking.find_signature(conn, content_identifier)
            if signature is None:
                return ReceiptOutcome.UNKNOWN
            outcome = tracking.accept(
                conn, signature, recipient, receipt=receipt, evidence=evidence, now=now
            )
            if outcome is ReceiptOutcome.ACCEPTED:
                _follow_up(conn, signature.entry_id, enqueue, now)
            return outcome

    def receipts_due(self, now: datetime, limit: int = 200) -> builtins.list[ReceiptRecord]:
        """Recipients still AWAITING a receipt whose deadline has come, earliest first."""
        where = (recipients.c.receipt_state == ReceiptState.AWAITING) & (
            recipients.c.receipt_deadline <= now
        )
        with self._read("receipts_due") as conn:
            return tracking.select_records(conn, where, limit, by_deadline=True)

    def expire_receipt(
        self, entry_id: str, recipient: str, now: datetime, *, enqueue: Sequence[NewMessage] = ()
    ) -> bool:
        """AWAITING → EXPIRED, queueing ``enqueue`` (the failure notice) in the same commit.

        False, and nothing queued, if the recipient no longer awaits a receipt (one won).
        """
        with self._write("expire_receipt") as conn:
            expired = tracking.expire(conn, entry_id, recipient, now)
            if expired:
                _follow_up(conn, entry_id, enqueue, now)
            return expired

    def receipt_records(self, message_id: str) -> builtins.list[ReceiptRecord]:
        """Every recipient of the entries with this Message-ID, in arrival order."""
        with self._read("receipt_records") as conn:
            return tracking.select_records(conn, messages.c.message_id == message_id, _ALL)

    def entries_by_message_id(self, message_id: str) -> builtins.list[Entry]:
        """The entries with this Message-ID (inbound and outbound), oldest first."""
        with self._read("entries_by_message_id") as conn:
            return select_entries(conn, messages.c.message_id == message_id, _ALL)

    def list(
        self,
        states: Iterable[State] | None = None,
        direction: Direction | None = None,
        limit: int = 200,
        *,
        reason: str | None = None,
        text: str | None = None,
        changed_since: datetime | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> builtins.list[Entry]:
        """Up to ``limit`` entries after skipping ``offset``, oldest first unless
        ``newest_first``, optionally of some states and one direction.

        ``reason`` matches the entry's or a recipient's reason code exactly; ``text`` is
        found (case-insensitively, as a literal) in the sender, the Message-ID or a
        recipient; ``changed_since`` keeps entries whose state changed at or after it.
        :meth:`total` counts what the same filter matches.
        """
        where = _listing(states, direction, reason, text, changed_since)
        order = [c.desc() for c in ORDER] if newest_first else list(ORDER)
        with self._read("list") as conn:
            chosen = select(messages.c.id).where(where).order_by(*order)
            ids = builtins.list(conn.scalars(chosen.limit(limit).offset(offset)))
            found = select_entries(conn, messages.c.id.in_(ids), len(ids)) if ids else []
        by_id = {e.id: e for e in found}
        return [by_id[i] for i in ids if i in by_id]

    def total(
        self,
        states: Iterable[State] | None = None,
        direction: Direction | None = None,
        *,
        reason: str | None = None,
        text: str | None = None,
        changed_since: datetime | None = None,
    ) -> int:
        """How many entries :meth:`list` with the same filter would give without a limit."""
        where = _listing(states, direction, reason, text, changed_since)
        with self._read("total") as conn:
            counted = conn.scalar(select(func.count()).select_from(messages).where(where))
        return int(counted or 0)

    def _attempt(
        self,
        entry_id: str,
        results_for: Callable[[Entry], Mapping[str, Reply]],
        now: datetime,
        attempt: Attempt | None = None,
    ) -> Entry:
        """Settle an ACTIVE entry's attempt (see :func:`settle`) in one transaction."""
        with self._write("record") as conn:
            return self._settle(conn, entry_id, results_for, now, attempt)

    def _settle(
        self,
        conn: Connection,
        entry_id: str,
        results_for: Callable[[Entry], Mapping[str, Reply]],
        now: datetime,
        attempt: Attempt | None,
    ) -> Entry:
        entry = lock_entry(conn, entry_id, {State.ACTIVE})
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
        write_settlement(conn, entry, settle(self._retry, entry, results, now), now)
        tracking.store_signatures(conn, entry, attempt.signatures, now)
        tracking.await_receipts(conn, entry, results, attempt.signatures, now)
        for key in attempt.remember:
            conn.execute(insert_new(conn, delivery_keys, key=key, stored_at=now))
        _follow_up(conn, entry_id, attempt.enqueue, now)
        return one_entry(conn, entry_id)

    def _move(
        self,
        entry_id: str,
        allowed: Iterable[State],
        event: str,
        now: datetime,
        changes: dict[str, Any],
        *,
        reason: str = "",
        detail: str = "",
    ) -> Entry:
        """A checked change of one entry and the event that explains it, in one transaction."""
        with self._write(event) as conn:
            entry = lock_entry(conn, entry_id, allowed)
            values = {"updated_at": now} | changes
            conn.execute(update(messages).where(messages.c.id == entry_id).values(values))
            detail = detail or f"was {entry.state}"
            log_event(conn, entry_id, event, now, reason=reason, detail=detail)
            return one_entry(conn, entry_id)

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """One write transaction; its events reach the operations log after the commit."""
        with _as_queue_error():
            wanted = logbook.wanted() or bool(self._observers)
            with (
                transaction(self._engine, action, write=True) as conn,
                eventlog.collecting(conn, messages, wanted) as lines,
            ):
                yield conn
            if lines:
                logbook.queue_events(lines)
                for observer in self._observers:
                    observer(lines)

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with _as_queue_error(), transaction(self._engine, action, write=False) as conn:
            yield conn


def _listing(
    states: Iterable[State] | None,
    direction: Direction | None,
    reason: str | None,
    text: str | None,
    changed_since: datetime | None,
) -> ColumnElement[bool]:
    """The filter of :meth:`QueueStore.list` and :meth:`QueueStore.total`."""
    where: ColumnElement[bool] = true()
    if states is not None:
        where = where & messages.c.state.in_(set(states))
    if direction is not None:
        where = where & (messages.c.direction == direction)
    if reason is not None:
        by_recipient = select(recipients.c.entry_id).where(recipients.c.reason == reason)
        where = where & ((messages.c.reason == reason) | messages.c.id.in_(by_recipient))
    if text:
        where = where & _mentions(text)
    if changed_since is not None:
        where = where & (messages.c.updated_at >= changed_since)
    return where


_REASONS = {
    StorageReason.UNAVAILABLE: QueueReason.UNAVAILABLE,
    StorageReason.UNSAFE_SETTINGS: QueueReason.UNSAFE_SETTINGS,
}


@contextmanager
def _as_queue_error() -> Iterator[None]:
    """The database's failures as the queue's: callers answer QueueError UNAVAILABLE with 451."""
    try:
        yield
    except StorageError as error:
        raise QueueError(_REASONS[error.reason], error.detail) from error


def _mentions(text: str) -> ColumnElement[bool]:
    """Entries whose sender, Message-ID or a recipient contains ``text`` (no wildcards)."""
    needle = text.lower()
    named = select(recipients.c.entry_id).where(
        func.lower(recipients.c.address).contains(needle, autoescape=True)
    )
    return (
        func.lower(messages.c.mail_from).contains(needle, autoescape=True)
        | func.lower(messages.c.message_id).contains(needle, autoescape=True)
        | messages.c.id.in_(named)
    )


def _results_of(attempt: Attempt) -> Callable[[Entry], Mapping[str, Reply]]:
    return lambda entry: attempt.results


def _follow_up(conn: Connection, entry_id: str, news: Sequence[NewMessage], now: datetime) -> None:
    """Queue messages an entry's outcome caused (notices); their ids go to its history."""
    if news:
        ids = [_insert(conn, new, now) for new in news]
        log_event(conn, entry_id, "queued-follow-up", now, detail=", ".join(ids))


def _insert(conn: Connection, new: NewMessage, now: datetime) -> str:
    entry_id = _new_id(now)
    conn.execute(messages.insert().values(message_row(entry_id, new, now)))
    conn.execute(
        recipients.insert(),
        [
            {"entry_id": entry_id, "position": position, "address": address}
            | {"disposition": Disposition.PENDING, "attempts": 0, "updated_at": now}
            for position, address in enumerate(new.recipients)
        ],
    )
    detail = f"{new.client}; {len(new.recipients)} recipients; {len(new.body)} bytes"
    log_event(conn, entry_id, "accepted", now, detail=detail)
    return entry_id


def _new_id(now: datetime) -> str:
    """Microseconds since 1970 (14 hex digits: sorts by arrival) and 40 random bits."""
    micros = (now - _EPOCH) // timedelta(microseconds=1)
    return f"{micros:014x}{secrets.token_hex(5)}"
