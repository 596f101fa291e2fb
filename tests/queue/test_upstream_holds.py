"""The queue's upstream backlog and key holds, on SQLite and PostgreSQL: one transaction
each, no clock read, and the history that explains every change."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from securemail.queue import Direction, QueueError, QueueStore, State
from securemail.replies import ok, temporary
from tests.queue.conftest import NOW, message

LATER = NOW + timedelta(hours=2)


REFUSED = temporary("connect-failed", "refused")


def upstream_entry(store: QueueStore, org_id: str = "ministry", at: datetime = NOW) -> str:
    held = dataclasses.replace(message(), org_id=org_id, kind="upstream", auth="agency")
    return store.enqueue(held, at)


def test_backlog_counts_per_member_what_is_not_final(store: QueueStore) -> None:
    """Per member: messages waiting, their size and the oldest; final ones drop out."""
    upstream_entry(store)
    upstream_entry(store, at=NOW + timedelta(minutes=5))
    upstream_entry(store, "council")
    store.enqueue(message(), NOW)  # ordinary outbound mail is no backlog
    backlog = {b.org_id: b for b in store.backlog()}
    assert sorted(backlog) == ["council", "ministry"]
    assert backlog["ministry"].waiting == 2 and backlog["ministry"].oldest == NOW
    assert backlog["ministry"].octets == 2 * len(message().body)
    in_hand = store.claim(Direction.OUTBOUND, LATER, 10)  # active: still waiting
    assert {b.org_id: b.waiting for b in store.backlog()} == {"council": 1, "ministry": 2}
    for entry in in_hand:
        store.record(entry.id, dict.fromkeys(entry.pending(), ok()), NOW)
    assert store.backlog() == []


def test_hasten_makes_one_members_deferred_entries_due_now(store: QueueStore) -> None:
    """When the member's gateway answers, its deferred upstream entries are due at once,
    and only those (another member's, or other kinds, wait their turn)."""
    ours, theirs = upstream_entry(store), upstream_entry(store, "council")
    mail = store.enqueue(message(), NOW)
    for claimed in store.claim(Direction.OUTBOUND, NOW, 10):
        store.defer(claimed.id, REFUSED, NOW)
    assert store.hasten("ministry", NOW + timedelta(seconds=1)) == 1
    due = {e.id for e in store.claim(Direction.OUTBOUND, NOW + timedelta(seconds=1), 10)}
    assert due == {ours} and theirs not in due and mail not in due
    assert "hastened" in [e.event for e in store.events(ours)]


def test_upstream_delayed_lists_entries_waiting_longer_than_asked(store: QueueStore) -> None:
    """Deferred upstream entries older than the age, not yet warned, with a sender."""
    waiting = upstream_entry(store)
    [claimed] = store.claim(Direction.OUTBOUND, NOW, 1)
    store.defer(claimed.id, REFUSED, NOW)
    assert store.upstream_delayed(NOW - timedelta(minutes=1)) == []
    assert [e.id for e in store.upstream_delayed(LATER)] == [waiting]
    store.mark_warned(waiting, LATER)
    assert store.upstream_delayed(LATER) == []
    assert store.warnings_due(LATER + timedelta(days=1)) == []  # never the generic warning


def test_hold_for_key_and_release_when_the_key_is_installed(store: QueueStore) -> None:
    """An entry in hand is held key-unavailable, counted per organisation, and released
    (due now, with its history) for its organisation only."""
    inbound = message(direction=Direction.INBOUND)
    entry_id = store.enqueue(inbound, NOW)
    store.enqueue(dataclasses.replace(inbound, org_id="council"), NOW)
    for claimed in store.claim(Direction.INBOUND, NOW, 10):
        store.hold_for_key(claimed.id, "no key", NOW, holder=claimed.claimed_by)
    held = store.get(entry_id)
    assert held is not None and (held.state, held.reason) == (State.HELD, "key-unavailable")
    assert store.held_for_key() == {"agency": 1, "council": 1}
    assert store.release_for_key("agency", LATER) == 1
    assert store.held_for_key() == {"council": 1}
    assert [e.id for e in store.claim(Direction.INBOUND, LATER, 10)] == [entry_id]
    events = [(e.event, e.reason) for e in store.events(entry_id)]
    assert ("held", "key-unavailable") in events and ("released", "key-unavailable") in events
    assert store.release_for_key("council", LATER, arrived_before=NOW) == 0
    assert store.release_for_key("council", LATER, arrived_before=LATER) == 1
    assert store.held_for_key() == {}


def test_only_an_entry_in_hand_can_be_held_for_a_key(store: QueueStore) -> None:
    """A queued (not claimed) entry is refused: the worker holds what it is trying."""
    entry_id = store.enqueue(message(), NOW)
    with pytest.raises(QueueError):
        store.hold_for_key(entry_id, "no key", NOW)
