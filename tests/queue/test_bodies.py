"""Cleartext at rest: a body leaves the queue once its entry's outcome is final, on both
engines; the entry, its history, the digest and the evidence stay."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from securemail.queue import Direction, QueueStore, ReceiptState, State
from securemail.replies import ok, permanent, temporary
from tests.queue.conftest import NOW, message
from tests.queue.test_receipts import BOB, EVIDENCE, RECEIPT, relayed, state_of

BODY = b"Subject: salary\r\n\r\nYour salary is attached.\r\n"
LATER = NOW + timedelta(days=2)


def _final(store: QueueStore, *, delivered: bool) -> str:
    entry_id = store.enqueue(message(body=BODY), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    reply = ok() if delivered else permanent("not-a-member", "no")
    store.record(entry_id, {"bob@ministry.govt.nz": reply}, NOW)
    return entry_id


def test_final_bodies_go_after_the_grace_and_their_digest_stays(store: QueueStore) -> None:
    """Delivered and bounced bodies are dropped once last changed before the cut-off, each
    with a "body-purged" event naming its SHA-256 and size; the entry and its history stay."""
    delivered, bounced = _final(store, delivered=True), _final(store, delivered=False)
    assert store.purge_bodies(NOW, LATER) == 0  # not older than the cut-off yet
    assert store.body(delivered) == BODY
    assert store.purge_bodies(NOW + timedelta(seconds=1), LATER) == 2
    for entry_id in (delivered, bounced):
        assert store.body(entry_id) == b""
        entry = store.get(entry_id)
        assert entry is not None and entry.size == len(BODY)
        last = store.events(entry_id)[-1]
        assert last.event == "body-purged"
        assert last.detail == f"sha256:{hashlib.sha256(BODY).hexdigest()}, {len(BODY)} octets"
    assert store.purge_bodies(LATER, LATER) == 0  # once only


def test_live_quarantined_and_receipt_awaiting_bodies_stay(store: QueueStore) -> None:
    """A deferred entry, a quarantined one (evidence) and one whose receipt is awaited keep
    their bodies; once the receipt comes, that body goes too, its signature stays."""
    deferred = store.enqueue(message(body=BODY), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(deferred, {"bob@ministry.govt.nz": temporary("busy", "later")}, NOW)
    quarantined = store.enqueue(message(body=BODY), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.quarantine(quarantined, "integrity-failed", "tag mismatch", NOW)
    awaiting = relayed(store)
    assert state_of(store, awaiting) is ReceiptState.AWAITING
    assert store.purge_bodies(LATER, LATER) == 0
    for entry_id in (deferred, quarantined, awaiting):
        assert store.body(entry_id) != b""
    store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW)
    assert store.purge_bodies(LATER, LATER) == 1
    assert store.body(awaiting) == b"" and store.signatures_for(awaiting)
    entry = store.get(awaiting)
    assert entry is not None and entry.state is State.DELIVERED


def test_a_full_batch_leaves_the_rest_for_the_next_call(store: QueueStore) -> None:
    """At most ``limit`` bodies go per call (one bounded transaction); the next call goes on."""
    for _ in range(3):
        _final(store, delivered=True)
    assert store.purge_bodies(LATER, LATER, limit=2) == 2
    assert store.purge_bodies(LATER, LATER, limit=2) == 1
    assert store.purge_bodies(LATER, LATER, limit=2) == 0
