"""Bulk queue actions: selection by ids, ALL, stdin and filters; dry runs; actions only
where they apply; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from securemail import bulk
from securemail.bulk import Action, BulkError, BulkReason, Selection
from securemail.queue import Direction, QueueStore, State
from securemail.replies import Reply, ok
from tests.queue.conftest import NOW, message, pg_schema, store, url

__all__ = ["pg_schema", "store", "url"]

DOWN = Reply(451, "4.4.1", "peer down", "connect-failed")
LATER = NOW + timedelta(hours=1)


def _deferred(
    store: QueueStore, sender: str = "alice@agency.govt.nz", to: str = "bob@ministry.govt.nz"
) -> str:
    entry_id = store.enqueue(message(to, mail_from=sender), NOW)
    [claimed] = store.claim(Direction.OUTBOUND, NOW)
    store.defer(claimed.id, DOWN, NOW)
    return entry_id


def _delivered(store: QueueStore) -> str:
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(entry_id, {"bob@ministry.govt.nz": ok()}, NOW)
    return entry_id


def _state(store: QueueStore, entry_id: str) -> State | None:
    entry = store.get(entry_id)
    return None if entry is None else entry.state


def test_parse_ids_takes_all_and_stdin() -> None:
    """ALL is a flag, ``-`` takes the first word of each stdin line (not comments, indented
    replies or the footer), and repeated ids count once."""
    lines = ["b  deferred ...", "    451 4.4.1 peer down", "", "# c", "d", "-- entries 1-2 of 2"]
    ids, every = bulk.parse_ids(["a", "-", "ALL", "a"], lines)
    assert (ids, every) == (("a", "b", "d"), True)


def test_an_empty_selection_is_refused(store: QueueStore) -> None:
    """Nothing named and no filter: refused before anything is read or changed."""
    with pytest.raises(BulkError) as refused:
        bulk.steer(store, Action.HOLD, Selection(), NOW)
    assert refused.value.reason is BulkReason.EMPTY_SELECTION


def test_hold_all_skips_delivered_mail_and_says_why(store: QueueStore) -> None:
    """hold ALL holds the deferred entries; the delivered one is refused as not applicable
    and stays delivered."""
    waiting = [_deferred(store), _deferred(store)]
    done = _delivered(store)
    report = bulk.steer(store, Action.HOLD, Selection(every=True), LATER)
    assert sorted(o.entry_id for o in report.changed) == sorted(waiting)
    [refused] = report.refused
    assert (refused.entry_id, refused.reason) == (done, BulkReason.NOT_APPLICABLE)
    assert refused.detail == "delivered entries cannot be held"
    assert [_state(store, i) for i in waiting] == [State.HELD, State.HELD]
    assert _state(store, done) is State.DELIVERED


def test_dry_run_changes_nothing(store: QueueStore) -> None:
    """A dry run reports what would change and leaves every entry as it was."""
    entry_id = _deferred(store)
    report = bulk.steer(store, Action.DELETE, Selection(ids=(entry_id,)), LATER, dry_run=True)
    assert report.dry_run and [o.entry_id for o in report.changed] == [entry_id]
    assert _state(store, entry_id) is State.DEFERRED


def test_filters_by_sender_recipient_state_and_reason(store: QueueStore) -> None:
    """Sender and recipient match whole addresses (any case), not substrings; state and
    reason narrow further."""
    alice = _deferred(store, sender="alice@agency.govt.nz")
    _deferred(store, sender="malice@agency.govt.nz")
    carol = _deferred(store, to="carol@council.govt.nz")
    held = bulk.steer(store, Action.HOLD, Selection(sender="ALICE@agency.govt.nz"), LATER)
    assert sorted(o.entry_id for o in held.changed) == sorted([alice, carol])
    retried = bulk.steer(
        store,
        Action.RETRY,
        Selection(recipient="carol@council.govt.nz", states=(State.HELD,)),
        LATER,
    )
    assert [o.entry_id for o in retried.changed] == [carol]
    by_reason = bulk.select(store, Selection(reason="connect-failed"))[0]
    assert len(by_reason) == 3
    assert bulk.select(store, Selection(reason="no-such-reason"))[0] == []


def test_unknown_ids_are_reported_and_others_still_done(store: QueueStore) -> None:
    """An unknown id is reported queue-entry-not-found; the known ones are steered."""
    entry_id = _deferred(store)
    report = bulk.steer(store, Action.HOLD, Selection(ids=("nope", entry_id)), LATER)
    assert [o.entry_id for o in report.changed] == [entry_id]
    assert [(o.entry_id, o.reason) for o in report.refused] == [("nope", "queue-entry-not-found")]


def test_purge_takes_only_old_finished_entries(store: QueueStore) -> None:
    """purge ALL removes a delivered entry last changed before the cut-off, never a
    deferred one, and not one changed after it."""
    done = _delivered(store)
    live = _deferred(store)
    recent = bulk.steer(store, Action.PURGE, Selection(every=True, before=NOW), LATER)
    assert recent.changed == () and _state(store, done) is State.DELIVERED
    report = bulk.steer(store, Action.PURGE, Selection(every=True, before=LATER), LATER)
    assert [o.entry_id for o in report.changed] == [done]
    assert [o.entry_id for o in report.refused] == [live]
    assert store.get(done) is None and store.events(done) == []
    assert _state(store, live) is State.DEFERRED


def test_quarantine_is_purged_only_when_asked(store: QueueStore) -> None:
    """A quarantined entry is refused by purge unless ``quarantined`` is given."""
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.quarantine(entry_id, "integrity-failed", "tag mismatch", NOW)
    chosen = Selection(ids=(entry_id,), before=LATER)
    [kept] = bulk.steer(store, Action.PURGE, chosen, LATER).refused
    assert "with --quarantined" in kept.detail
    assert bulk.steer(store, Action.PURGE, chosen, LATER, quarantined=True).changed
    assert store.get(entry_id) is None
