"""The queue's message path in few round trips: claims with bodies, grouped event rows,
reservations in one transaction, settlements without a read-back, on both engines."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from securemail.queue import (
    Attempt,
    Direction,
    NewSignature,
    QueueError,
    QueueStore,
    ReceiptOutcome,
    ReceiptTaken,
    Reservation,
    State,
)
from securemail.queue.commits import GroupCommit
from securemail.queue.threads import DatabaseThreads
from securemail.replies import ok, permanent, temporary
from tests.queue.conftest import NOW, RETRY, message
from tests.queue.statements import statements

BOB = "bob@ministry.govt.nz"
CAROL = "carol@ministry.govt.nz"


def test_a_claim_with_bodies_carries_each_entrys_message(store: QueueStore) -> None:
    """A worker's claim returns every entry with its own body; a plain claim without."""
    first = store.enqueue(message(body=b"Subject: one\r\n\r\n1\r\n"), NOW)
    second = store.enqueue(message(body=b"Subject: two\r\n\r\n2\r\n"), NOW)
    claimed = store.claim(Direction.OUTBOUND, NOW, 16, owner="gw-a/1", bodies=True)
    assert {e.id: e.body for e in claimed} == {
        first: b"Subject: one\r\n\r\n1\r\n",
        second: b"Subject: two\r\n\r\n2\r\n",
    }
    assert all(e.state is State.ACTIVE and e.claimed_by == "gw-a/1" for e in claimed)
    third = store.enqueue(message(), NOW)
    [plain] = store.claim(Direction.OUTBOUND, NOW, 16)
    assert plain.id == third and plain.body is None


def test_an_attempts_events_are_written_in_order(store: QueueStore) -> None:
    """The events of one attempt, grouped into one insert, keep their order in the history,
    after the entry's earlier ones."""
    entry_id = store.enqueue(message(BOB, CAROL), NOW)
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/1")
    later = NOW + timedelta(seconds=1)
    results = {BOB: ok(), CAROL: temporary("timeout", "no answer")}
    store.record(entry_id, results, later, events=[("protected", "p"), ("classified", "c")])
    history = [(e.event, e.recipient) for e in store.events(entry_id)]
    assert history == [
        ("accepted", None),
        ("protected", None),
        ("classified", None),
        ("delivered", BOB),
        ("deferred", CAROL),
    ]


def test_a_failed_group_writes_none_of_its_events(store: QueueStore) -> None:
    """A batch refused as a whole leaves no event of any of its attempts behind."""
    done = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/1")
    store.record(done, {BOB: ok()}, NOW)
    other = store.enqueue(message(CAROL), NOW)
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/1")
    batch = [
        Attempt(other, {CAROL: ok()}, (("protected", "p"),)),
        Attempt(done, {BOB: ok()}, (("protected", "again"),)),  # no longer ACTIVE
    ]
    with pytest.raises(QueueError):
        store.record_many(batch, NOW)
    assert [e.event for e in store.events(other)] == ["accepted"]
    assert store.get(other).state is State.ACTIVE  # type: ignore[union-attr]


def test_reservations_of_several_entries_commit_together(store: QueueStore) -> None:
    """Reservations made in one transaction answer as one by one: the second entry that
    asks for a key a live entry holds finds it busy; a delivered key is delivered."""
    first, second = (store.enqueue(message(body=b"x\r\n"), NOW) for _ in range(2))
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/1", lease=timedelta(minutes=1))
    store.record(first, {BOB: ok()}, NOW, remember=["old"])
    third = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/1", lease=timedelta(minutes=1))
    found = store.reserve_many([(["k1", "old"], second), (["k1"], third)], NOW)
    assert found == [
        {"k1": Reservation.FRESH, "old": Reservation.DELIVERED},
        {"k1": Reservation.BUSY},
    ]


def test_the_group_commit_reserves_concurrent_requests(store: QueueStore, url: str) -> None:
    """Reservations asked for at once through the group commit each get their answer."""
    ids = [store.enqueue(message(), NOW) for _ in range(3)]
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/1", lease=timedelta(minutes=1))
    threads = DatabaseThreads(url)

    async def reserve_all() -> list[dict[str, Reservation]]:
        commits = GroupCommit(store, threads, lambda: NOW)
        asks = [commits.reserve(["same", f"own-{i}"], i) for i in ids]
        return await asyncio.gather(*asks)

    try:
        answers = asyncio.run(reserve_all())
    finally:
        threads.close()
    assert [a["same"] for a in answers] == [
        Reservation.FRESH,
        Reservation.BUSY,
        Reservation.BUSY,
    ]
    assert all(a[f"own-{i}"] is Reservation.FRESH for a, i in zip(answers, ids, strict=True))


def test_the_group_commit_takes_concurrent_receipts(store: QueueStore, url: str) -> None:
    """Receipts taken at once through the group commit share a transaction and each get
    their answer: one copy accepted, the other a duplicate."""
    bob, carol = "bob@ministry.govt.nz", "carol@ministry.govt.nz"
    entry_id = store.enqueue(message(bob, carol), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    sent = NewSignature("c0ffee02", "ministry", (bob, carol), b"0", "{}", timedelta(hours=1))
    store.record(entry_id, {bob: ok(), carol: ok()}, NOW, signatures=[sent])
    threads = DatabaseThreads(url)

    async def take_all() -> list[ReceiptOutcome]:
        commits = GroupCommit(store, threads, lambda: NOW)
        taken = [ReceiptTaken("c0ffee02", who, b"r", "{}") for who in (bob, carol, bob)]
        return await asyncio.gather(*(commits.accept_receipt(t) for t in taken))

    try:
        outcomes = asyncio.run(take_all())
    finally:
        threads.close()
    assert outcomes == ["accepted", "accepted", "duplicate"]


def test_quarantined_entries_are_counted_per_source_and_window(store: QueueStore) -> None:
    """The peer listener's quota counts a source's entries quarantined within the window,
    from the queue every process shares; another source's and older ones do not count."""

    def quarantined(client: str, at: datetime) -> None:
        entry_id = store.enqueue(dataclasses.replace(message(), client=client), at)
        store.quarantine(entry_id, "integrity-failed", "test", at)

    quarantined("peer 192.0.2.1", NOW - timedelta(hours=2))
    quarantined("peer 192.0.2.1", NOW - timedelta(minutes=10))
    quarantined("peer 192.0.2.1", NOW)
    quarantined("peer 192.0.2.9", NOW)
    store.enqueue(dataclasses.replace(message(), client="peer 192.0.2.1"), NOW)
    assert store.quarantined_from("peer 192.0.2.1", NOW - timedelta(hours=1)) == 2
    assert store.quarantined_from("peer 192.0.2.9", NOW - timedelta(hours=1)) == 1
    assert store.quarantined_from("peer 198.51.100.7", NOW - timedelta(hours=1)) == 0


def _settled(store: QueueStore, direction: Direction, *, release: bool = True) -> list[str]:
    """The statements of one settlement of a fresh entry of ``direction`` (delivered to
    BOB, deferred for CAROL; with ``release`` a record, else a defer)."""
    entry_id = store.enqueue(message(BOB, CAROL, direction=direction), NOW)
    store.claim(direction, NOW, owner="gw-a/1")
    with statements() as seen:
        if release:
            store.record(entry_id, {BOB: ok(), CAROL: temporary("timeout", "x")}, NOW)
        else:
            store.defer(entry_id, temporary("timeout", "x"), NOW)
    return seen


def test_a_settlement_reads_its_entry_once(store: QueueStore) -> None:
    """A settlement reads the entry and its recipients once, in one statement under the
    entry's lock, and not again after its writes: the entry it returns is made from what
    it wrote."""
    seen = _settled(store, Direction.INBOUND)
    first_write = next(i for i, s in enumerate(seen) if not s.startswith("SELECT"))
    [read] = seen[:first_write]
    assert "FROM MESSAGES LEFT OUTER JOIN RECIPIENTS" in read
    assert not any("FROM MESSAGES" in s or "FROM RECIPIENTS" in s for s in seen[first_write:])


def test_only_an_inbound_entrys_record_drops_unused_reservations(store: QueueStore) -> None:
    """An inbound entry's record drops the reservations it did not deliver under; an
    outbound entry's record (outbound entries never reserve) and a defer do not look."""

    def dropped(seen: list[str]) -> int:
        return sum(1 for s in seen if s.startswith("DELETE FROM DELIVERY_KEYS"))

    assert dropped(_settled(store, Direction.INBOUND)) == 1
    assert dropped(_settled(store, Direction.OUTBOUND)) == 0
    assert dropped(_settled(store, Direction.INBOUND, release=False)) == 0


@pytest.mark.parametrize("direction", list(Direction))
def test_a_settled_entry_is_the_entry_as_stored(store: QueueStore, direction: Direction) -> None:
    """The entry each settlement returns equals the stored one read afterwards: delivered,
    bounced, deferred, awaiting a receipt, and expired past the maximum lifetime."""
    dave = "Dave@Ministry.govt.nz"
    entry_id = store.enqueue(message(BOB, CAROL, dave, direction=direction), NOW)
    store.claim(direction, NOW, owner="gw-a/1")
    sent = NewSignature("c0ffee07", "ministry", (BOB,), b"0", "{}", timedelta(hours=1))
    results = {BOB: ok(), CAROL: permanent("refused", "no"), dave.lower(): temporary("t", "x")}
    first = store.record(entry_id, results, NOW, signatures=[sent], holder="gw-a/1")
    assert first == store.get(entry_id)
    assert first.state is State.DEFERRED and first.recipients[0].receipt_state == "awaiting"
    later = NOW + RETRY.max_lifetime + timedelta(minutes=1)
    store.claim(direction, later, owner="gw-a/2")
    local = timezone(timedelta(hours=13))  # a settlement's time in another zone
    last = store.defer(entry_id, temporary("t", "again"), later.astimezone(local))
    assert last == store.get(entry_id)
    assert last.state is State.DELIVERED and last.reason == "expired"


def test_a_workers_claim_is_one_statement_and_the_recipients_on_postgresql(
    store: QueueStore,
) -> None:
    """A claim with bodies is one statement and the recipients' read on PostgreSQL (look,
    move and read on SQLite); either way it takes entries oldest first with their bodies
    and recipients, and takes over an expired lease with a "lease-expired" event."""
    bodies = [f"{n}\r\n".encode() for n in range(3)]
    ids = [
        store.enqueue(message(BOB, CAROL, body=body), NOW + timedelta(seconds=n))
        for n, body in enumerate(bodies)
    ]
    with statements() as seen:
        [first] = store.claim(Direction.OUTBOUND, NOW, 1, owner="gw-a/1", bodies=True)
    on_postgresql = "synchronous_commit" in store.durability()
    assert len(seen) == (2 if on_postgresql else 4) and first.id == ids[0]
    later = NOW + timedelta(minutes=2)
    claimed = store.claim(Direction.OUTBOUND, later, 16, owner="gw-b/1", bodies=True)
    assert [e.id for e in claimed] == ids
    assert [e.body for e in claimed] == bodies
    assert all(e.claimed_by == "gw-b/1" and e.state is State.ACTIVE for e in claimed)
    assert all(e.recipients[1].address == CAROL for e in claimed)
    assert store.event_details(ids[0], "lease-expired") == ["held by gw-a/1; now gw-b/1"]
    assert store.event_details(ids[1], "lease-expired") == []
