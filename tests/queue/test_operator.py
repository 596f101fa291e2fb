"""The operator's verbs: hold, release, retry, delete, purge and quarantine, on both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest

from securemail.queue import Direction, QueueError, QueueReason, QueueStore, State
from securemail.replies import ok, temporary
from tests.queue.conftest import NOW, message

DOWN = temporary("peer-unavailable", "connection refused")
LATER = NOW + timedelta(hours=1)


def _deferred(store: QueueStore) -> str:
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.defer(entry_id, DOWN, NOW)
    return entry_id


def test_hold_and_release(store: QueueStore) -> None:
    """A held entry is never claimed; released, it is due at once."""
    entry_id = _deferred(store)
    held = store.hold(entry_id, NOW)
    assert held.state is State.HELD and held.next_attempt_at is None
    assert store.claim(Direction.OUTBOUND, LATER) == []
    released = store.release(entry_id, LATER)
    assert (released.state, released.next_attempt_at) == (State.DEFERRED, LATER)
    assert [e.id for e in store.claim(Direction.OUTBOUND, LATER)] == [entry_id]
    assert [e.event for e in store.events(entry_id)][-2:] == ["held", "released"]


def test_retry_makes_due_now(store: QueueStore) -> None:
    """retry moves a deferred or held entry's next attempt to now."""
    entry_id = _deferred(store)
    soon = NOW + timedelta(seconds=5)
    assert store.claim(Direction.OUTBOUND, soon) == []
    assert store.retry(entry_id, soon).next_attempt_at == soon
    store.hold(entry_id, soon)
    assert store.retry(entry_id, soon).state is State.DEFERRED
    assert [e.id for e in store.claim(Direction.OUTBOUND, soon)] == [entry_id]


def test_verbs_refuse_wrong_states_and_unknown_ids(store: QueueStore) -> None:
    """A verb on an entry in the wrong state or with an unknown id is refused, nothing changes."""
    entry_id = store.enqueue(message(), NOW)
    with pytest.raises(QueueError) as release:
        store.release(entry_id, NOW)
    assert release.value.reason is QueueReason.BAD_STATE
    store.claim(Direction.OUTBOUND, NOW)
    with pytest.raises(QueueError) as hold_active:
        store.hold(entry_id, NOW)
    assert hold_active.value.reason is QueueReason.BAD_STATE
    with pytest.raises(QueueError) as delete_active:
        store.delete(entry_id, NOW)
    assert delete_active.value.reason is QueueReason.BAD_STATE
    with pytest.raises(QueueError) as unknown:
        store.hold("0" * 24, NOW)
    assert unknown.value.reason is QueueReason.NOT_FOUND
    entry = store.get(entry_id)
    assert entry is not None and entry.state is State.ACTIVE


def test_delete_keeps_history(store: QueueStore) -> None:
    """A deleted entry and its body are gone; its history says who removed it and from where."""
    entry_id = _deferred(store)
    assert store.delete(entry_id, LATER)
    assert store.get(entry_id) is None
    assert not store.delete(entry_id, LATER)
    last = store.events(entry_id)[-1]
    assert (last.event, last.time, last.detail) == ("deleted", LATER, "was deferred")


def test_purge_final_entries_only(store: QueueStore) -> None:
    """Purge removes old delivered and bounced entries with their history, nothing live."""
    delivered = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(delivered, {"bob@ministry.govt.nz": ok()}, NOW)
    live = _deferred(store)
    assert store.purge([State.DELIVERED, State.BOUNCED], NOW) == 0  # not older than NOW
    assert store.purge([State.DELIVERED, State.BOUNCED], LATER) == 1
    assert store.get(delivered) is None and store.events(delivered) == []
    assert store.get(live) is not None
    with pytest.raises(QueueError) as refused:
        store.purge([State.DEFERRED], LATER)
    assert refused.value.reason is QueueReason.BAD_STATE
    assert store.purge([], LATER) == 0


def test_quarantine_is_kept_unless_named(store: QueueStore) -> None:
    """A quarantined entry keeps its body, is never claimed, and survives an ordinary purge."""
    entry_id = store.enqueue(message(body=b"unreadable"), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    entry = store.quarantine(entry_id, "integrity-failed", "tag mismatch", NOW)
    assert entry.state is State.QUARANTINED and entry.next_attempt_at is None
    last = store.events(entry_id)[-1]
    assert (last.event, last.reason, last.detail) == (
        "quarantined",
        "integrity-failed",
        "tag mismatch",
    )
    far = NOW + timedelta(days=3650)
    assert store.claim(Direction.OUTBOUND, far) == []
    assert store.purge([State.DELIVERED, State.BOUNCED], far) == 0
    assert store.body(entry_id) == b"unreadable"
    with pytest.raises(QueueError):
        store.quarantine(entry_id, "again", "", NOW)
    assert store.purge([State.QUARANTINED], far) == 1


def test_recover_returns_active_entries(store: QueueStore) -> None:
    """Entries a crash left active come back due now; others are untouched."""
    active = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    waiting = store.enqueue(message(), NOW + timedelta(seconds=1))
    assert store.recover(LATER) == 1
    entry = store.get(active)
    assert entry is not None
    assert (entry.state, entry.next_attempt_at) == (State.DEFERRED, LATER)
    assert store.events(active)[-1].event == "recovered"
    assert [e.id for e in store.claim(Direction.OUTBOUND, LATER)] == [active, waiting]
    assert store.recover(LATER) == 2
