"""Claims are leases and delivery keys are reserved in the database, on both engines."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from securemail.queue import (
    Attempt,
    Direction,
    QueueError,
    QueueReason,
    QueueStore,
    Reservation,
    State,
)
from securemail.replies import ok, temporary
from tests.queue.conftest import NOW, message

LEASE = timedelta(seconds=30)
BOB = "bob@ministry.govt.nz"


def test_an_expired_lease_is_taken_over_by_another_process(store: QueueStore) -> None:
    """While its lease holds nobody else claims an entry; after it, another process does."""
    entry_id = store.enqueue(message(), NOW)
    [held] = store.claim(Direction.OUTBOUND, NOW, owner="gw-a/11", lease=LEASE)
    assert held.id == entry_id
    assert store.claim(Direction.OUTBOUND, NOW + LEASE - timedelta(seconds=1), owner="gw-b/7") == []
    [taken] = store.claim(Direction.OUTBOUND, NOW + LEASE + timedelta(seconds=1), owner="gw-b/7")
    assert (taken.id, taken.state) == (entry_id, State.ACTIVE)
    expired = [e for e in store.events(entry_id) if e.event == "lease-expired"]
    assert [e.detail for e in expired] == ["held by gw-a/11; now gw-b/7"]


def test_a_renewed_lease_holds_and_only_its_owner_renews(store: QueueStore) -> None:
    """``renew`` extends the owner's lease; another owner's renew changes nothing."""
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/11", lease=LEASE)
    later = NOW + timedelta(seconds=20)
    assert store.renew([entry_id], "gw-b/7", later, LEASE) == []
    assert store.renew([entry_id, "nothing"], "gw-a/11", later, LEASE) == [entry_id]
    assert store.claim(Direction.OUTBOUND, NOW + timedelta(seconds=40), owner="gw-b/7") == []
    assert len(store.claim(Direction.OUTBOUND, NOW + timedelta(seconds=51), owner="gw-b/7")) == 1
    store.record(entry_id, {BOB: ok()}, NOW + timedelta(seconds=52))
    assert store.renew([entry_id], "gw-b/7", NOW + timedelta(seconds=53), LEASE) == []


def test_a_node_recovers_the_entries_of_its_processes(store: QueueStore) -> None:
    """``recover(owner=node)`` takes back what the node's processes held, not another node's."""
    ids = [
        store.enqueue(message(f"r{n}@ministry.govt.nz"), NOW + timedelta(microseconds=n))
        for n in range(3)
    ]
    for owner in ("gw-a/11", "gw-ab/3", "gw-b/7"):
        store.claim(Direction.OUTBOUND, NOW + timedelta(seconds=1), 1, owner=owner)
    assert store.recover(NOW, owner="gw-a") == 1
    states = [store.get(i).state for i in ids]  # type: ignore[union-attr]
    assert states == [State.DEFERRED, State.ACTIVE, State.ACTIVE]
    assert store.recover(NOW, owner="gw-b/7") == 1  # one worker process that died


def _inbound_copies(store: QueueStore, count: int) -> list[str]:
    ids = [
        store.enqueue(message(direction=Direction.INBOUND), NOW + timedelta(microseconds=n))
        for n in range(count)
    ]
    store.claim(Direction.INBOUND, NOW + timedelta(seconds=1), count, owner="gw/1", lease=LEASE)
    return ids


def test_a_key_has_one_holder_and_one_delivery(store: QueueStore) -> None:
    """A key reserved by one live entry is BUSY for a copy, then DELIVERED once recorded."""
    first, second = _inbound_copies(store, 2)
    assert store.reserve(["k"], first, NOW) == {"k": Reservation.FRESH}
    assert store.reserve(["k"], first, NOW) == {"k": Reservation.RESERVED}  # its retry
    assert store.reserve(["k"], second, NOW) == {"k": Reservation.BUSY}
    assert not store.seen("k")
    store.record(first, {BOB: ok()}, NOW, remember=["k"])
    assert store.seen("k")
    assert store.reserve(["k"], second, NOW) == {"k": Reservation.DELIVERED}


def test_a_failed_delivery_frees_its_reservation(store: QueueStore) -> None:
    """An attempt that delivered nothing under a key drops its reservation with its record."""
    first, second = _inbound_copies(store, 2)
    store.reserve(["k"], first, NOW)
    store.record(first, {BOB: temporary("store-down", "451 from the store")}, NOW)
    assert store.reserve(["k"], second, NOW) == {"k": Reservation.FRESH}


def test_a_deferred_attempt_keeps_its_reservations(store: QueueStore) -> None:
    """A whole attempt deferred (its outcome unknown: the store may hold the message) keeps
    the entry's reservations, so the next holder takes the key over, never FRESH."""
    first, second = _inbound_copies(store, 2)
    assert store.reserve(["k"], first, NOW) == {"k": Reservation.FRESH}
    store.defer(first, temporary("internal-error", "RuntimeError"), NOW)
    assert store.reserve(["k"], second, NOW) == {"k": Reservation.RESERVED}


def test_a_dead_holders_reservation_is_taken_over(store: QueueStore) -> None:
    """A holder whose lease expired (its process died) does not block the key."""
    first, second = _inbound_copies(store, 2)
    store.reserve(["k"], first, NOW)
    after = NOW + LEASE + timedelta(seconds=2)
    assert store.renew([second], "gw/1", after, LEASE) == [second]  # its process lives on
    assert store.reserve(["k"], second, after) == {"k": Reservation.RESERVED}
    assert store.reserve(["k"], first, after) == {"k": Reservation.BUSY}


def test_a_second_delivery_under_a_key_cannot_be_recorded(store: QueueStore) -> None:
    """The database refuses a second delivered record of one key, and writes nothing of it."""
    first, second = _inbound_copies(store, 2)
    store.record(first, {BOB: ok()}, NOW, remember=["k"])
    with pytest.raises(QueueError) as refused:
        store.record(second, {BOB: ok()}, NOW, remember=["k"], enqueue=[message()])
    assert refused.value.reason is QueueReason.BAD_STATE
    assert store.get(second).state is State.ACTIVE  # type: ignore[union-attr]
    assert len(store.list(direction=Direction.OUTBOUND)) == 0  # no receipt or notice queued


def _reserve_all(
    store: QueueStore, keys: list[str], entry_id: str, start: threading.Barrier
) -> list[str]:
    start.wait(timeout=30)
    held = (Reservation.FRESH, Reservation.RESERVED)
    return [k for k in keys if store.reserve([k], entry_id, NOW)[k] in held]


def test_racing_processes_reserve_each_key_once(store: QueueStore, url: str) -> None:
    """Two processes' stores reserving the same keys for two live copies: one holder each."""
    first, second = _inbound_copies(store, 2)
    keys = [f"key-{n}" for n in range(40)]
    start = threading.Barrier(2)
    with QueueStore.open(url) as other, ThreadPoolExecutor(2) as pool:
        mine = pool.submit(_reserve_all, store, keys, first, start)
        theirs = pool.submit(_reserve_all, other, keys, second, start)
        won = mine.result(timeout=60) + theirs.result(timeout=60)
    assert sorted(won) == sorted(keys)


def _taken_over(store: QueueStore) -> tuple[str, str]:
    """An entry claimed by gw-a/11 whose lease expired and that gw-b/7 took over; its id and
    the stale claim's name."""
    entry_id = store.enqueue(message(), NOW)
    [stale] = store.claim(Direction.OUTBOUND, NOW, owner="gw-a/11", lease=LEASE)
    assert stale.claimed_by == "gw-a/11"
    [taken] = store.claim(Direction.OUTBOUND, NOW + LEASE * 2, owner="gw-b/7", lease=LEASE)
    assert taken.claimed_by == "gw-b/7"
    return entry_id, "gw-a/11"


def test_a_stale_holder_cannot_record_over_the_new_one(store: QueueStore) -> None:
    """A worker that outlived its lease has its record, defer and quarantine refused with
    queue-lease-lost, and nothing of them is written; the new holder's record stands."""
    entry_id, stale = _taken_over(store)
    later = NOW + LEASE * 2 + timedelta(seconds=1)
    before = (store.get(entry_id), len(store.events(entry_id)))
    refusals: list[Callable[[], object]] = [
        lambda: store.record(
            entry_id, {BOB: ok()}, later, holder=stale, remember=["k"], enqueue=[message()]
        ),
        lambda: store.defer(entry_id, temporary("timeout", "late"), later, holder=stale),
        lambda: store.quarantine(entry_id, "decrypt-failed", "late", later, holder=stale),
    ]
    for refused in refusals:
        with pytest.raises(QueueError) as error:
            refused()
        assert error.value.reason is QueueReason.LEASE_LOST
        assert "held by gw-b/7" in error.value.detail
    assert (store.get(entry_id), len(store.events(entry_id))) == before
    assert not store.seen("k")
    assert len(store.list(direction=Direction.OUTBOUND)) == 1  # no notice queued
    settled = store.record(entry_id, {BOB: ok()}, later, holder="gw-b/7")
    assert settled.state is State.DELIVERED
    with pytest.raises(QueueError) as after:
        store.record(entry_id, {BOB: temporary("timeout", "late")}, later, holder=stale)
    assert after.value.reason is QueueReason.LEASE_LOST
    assert store.get(entry_id).state is State.DELIVERED  # type: ignore[union-attr]


def test_a_stale_holder_in_a_group_commit_fails_alone(store: QueueStore) -> None:
    """A batch holding one stale attempt is refused whole (nothing written); the attempts
    are then committed one by one, as the group commit does."""
    entry_id, stale = _taken_over(store)
    other = store.enqueue(message("carol@ministry.govt.nz"), NOW + LEASE * 2)
    [mine] = store.claim(Direction.OUTBOUND, NOW + LEASE * 2, owner="gw-a/11", lease=LEASE)
    assert mine.id == other
    later = NOW + LEASE * 2 + timedelta(seconds=1)
    batch = [
        Attempt(other, {"carol@ministry.govt.nz": ok()}, holder="gw-a/11"),
        Attempt(entry_id, {BOB: ok()}, holder=stale),
    ]
    with pytest.raises(QueueError) as error:
        store.record_many(batch, later)
    assert error.value.reason is QueueReason.LEASE_LOST
    assert store.get(other).state is State.ACTIVE  # type: ignore[union-attr]
    [recorded] = store.record_many(batch[:1], later)
    assert recorded.state is State.DELIVERED


def test_an_expired_lease_nobody_took_over_still_records(store: QueueStore) -> None:
    """The fence is the claim: a lease that ran out with no other process taking the entry
    still records (nobody else tried it), and its renewal revives it."""
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/11", lease=LEASE)
    late = NOW + LEASE * 3
    assert store.renew([entry_id], "gw-a/11", late, LEASE) == [entry_id]
    assert store.claim(Direction.OUTBOUND, late + timedelta(seconds=1), owner="gw-b/7") == []
    recorded = store.record(entry_id, {BOB: ok()}, late, holder="gw-a/11")
    assert (recorded.state, recorded.claimed_by) == (State.DELIVERED, "gw-a/11")


def test_a_recovered_entry_fences_out_its_old_holder(store: QueueStore) -> None:
    """``recover`` (a node's restart) returns an entry to the queue and drops its claim: a
    worker process of the old node still draining cannot record it any more."""
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW, owner="gw-a/11", lease=LEASE)
    assert store.recover(NOW + timedelta(seconds=1), owner="gw-a") == 1
    assert store.get(entry_id).claimed_by is None  # type: ignore[union-attr]
    with pytest.raises(QueueError) as error:
        store.record(entry_id, {BOB: ok()}, NOW + timedelta(seconds=2), holder="gw-a/11")
    assert error.value.reason is QueueReason.LEASE_LOST
    assert "returned to the queue" in error.value.detail
    assert store.get(entry_id).state is State.DEFERRED  # type: ignore[union-attr]


def test_a_key_handed_to_the_store_is_its_entrys_to_record(store: QueueStore) -> None:
    """Keys marked handed (the store said 250) are delivered: a copy is suppressed, the
    entry itself finds them HANDED on its next try, and its record takes them."""
    first, second = _inbound_copies(store, 2)
    store.reserve(["k", "other"], first, NOW)
    assert store.handed(["k"], first, NOW) == 1
    assert store.handed(["k"], second, NOW) == 0  # only the holder's reservation
    assert store.seen("k") and not store.seen("other")
    assert store.reserve(["k"], second, NOW) == {"k": Reservation.DELIVERED}
    assert store.reserve(["k"], first, NOW) == {"k": Reservation.HANDED}
    store.record(first, {BOB: ok()}, NOW, remember=["k"], holder="gw/1")
    with pytest.raises(QueueError):
        store.record(second, {BOB: ok()}, NOW, remember=["k"])
