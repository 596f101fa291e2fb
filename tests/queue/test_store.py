"""Enqueue, claim and record on both engines: what receive services and workers rely on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from securemail.queue import (
    Attempt,
    Direction,
    Disposition,
    QueueError,
    QueueReason,
    QueueStore,
    State,
)
from securemail.replies import Reply, ok, permanent, temporary
from tests.queue.conftest import NOW, RETRY, message

BUSY = Reply(450, "4.2.1", "mailbox busy", "peer-busy", "try later")
UNKNOWN = Reply(550, "5.1.1", "no such user", "unknown-recipient")
DOWN = temporary("peer-unavailable", "connection refused")


def test_round_trip(store: QueueStore) -> None:
    """An enqueued message is claimed once, body intact, and delivered when all get 250."""
    body = b"Subject: figures\r\n\r\n" + bytes(range(256)) * 40
    entry_id = store.enqueue(message("bob@ministry.govt.nz", body=body), NOW)
    entry = store.get(entry_id)
    assert entry is not None
    assert (entry.state, entry.size, entry.next_attempt_at) == (State.INCOMING, len(body), NOW)
    assert entry.created_at == NOW and entry.created_at.tzinfo is not None
    assert store.body(entry_id) == body

    claimed = store.claim(Direction.OUTBOUND, NOW)
    assert [e.id for e in claimed] == [entry_id] and claimed[0].state is State.ACTIVE
    assert store.claim(Direction.OUTBOUND, NOW) == []

    done = store.record(entry_id, {"BOB@ministry.govt.nz": ok("queued as 42")}, NOW)
    assert done.state is State.DELIVERED and done.next_attempt_at is None
    assert done.recipients[0].disposition is Disposition.DELIVERED
    assert [e.event for e in store.events(entry_id)] == ["accepted", "delivered"]


def test_recipients_deduplicated_in_order(store: QueueStore) -> None:
    """Envelope recipients repeated in another case are stored once, in envelope order."""
    entry_id = store.enqueue(message("b@x.nz", "a@x.nz", "B@X.NZ"), NOW)
    entry = store.get(entry_id)
    assert entry is not None and entry.pending() == ("b@x.nz", "a@x.nz")


def test_claim_only_due_entries_of_one_direction(store: QueueStore) -> None:
    """A worker claims only its direction's entries that are due, oldest first."""
    later = store.enqueue(message(), NOW + timedelta(seconds=2))
    first = store.enqueue(message(), NOW)
    inbound = store.enqueue(message(direction=Direction.INBOUND), NOW)
    assert [e.id for e in store.claim(Direction.OUTBOUND, NOW + timedelta(seconds=1))] == [first]
    assert [e.id for e in store.claim(Direction.OUTBOUND, NOW + timedelta(seconds=9))] == [later]
    assert [e.id for e in store.claim(Direction.INBOUND, NOW)] == [inbound]


def test_ids_sort_by_arrival(store: QueueStore) -> None:
    """Queue ids shown to operators sort in arrival order."""
    ids = [store.enqueue(message(), NOW + timedelta(microseconds=n)) for n in range(5)]
    assert sorted(ids) == ids


def test_mixed_outcomes_in_one_attempt(store: QueueStore) -> None:
    """250, 450 and 550 in one attempt: one delivered, one retried later, one bounced."""
    entry_id = store.enqueue(message("ok@m.nz", "busy@m.nz", "gone@m.nz"), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    results = {"ok@m.nz": ok(), "busy@m.nz": BUSY, "gone@m.nz": UNKNOWN}
    entry = store.record(entry_id, results, NOW)

    assert entry.state is State.DEFERRED
    assert entry.next_attempt_at == NOW + RETRY.schedule[0]
    assert (entry.attempts, entry.last_reply, entry.reason) == (1, BUSY.line(), "peer-busy")
    by_address = {r.address: r for r in entry.recipients}
    assert by_address["ok@m.nz"].disposition is Disposition.DELIVERED
    assert by_address["gone@m.nz"].disposition is Disposition.BOUNCED
    assert by_address["gone@m.nz"].reason == "unknown-recipient"
    assert by_address["busy@m.nz"].disposition is Disposition.PENDING
    assert by_address["busy@m.nz"].last_reply == "450 4.2.1 mailbox busy"
    assert entry.pending() == ("busy@m.nz",)
    events = [(e.event, e.recipient) for e in store.events(entry_id)][1:]
    assert sorted(events) == [
        ("bounced", "gone@m.nz"),
        ("deferred", "busy@m.nz"),
        ("delivered", "ok@m.nz"),
    ]

    retry_at = NOW + RETRY.schedule[0]
    assert store.claim(Direction.OUTBOUND, retry_at - timedelta(seconds=1)) == []
    assert [e.pending() for e in store.claim(Direction.OUTBOUND, retry_at)] == [("busy@m.nz",)]
    final = store.record(entry_id, {"busy@m.nz": ok()}, retry_at)
    assert final.state is State.DELIVERED and final.attempts == 2


def test_only_bounces_make_the_entry_bounced(store: QueueStore) -> None:
    """An entry whose every recipient was refused ends BOUNCED."""
    entry_id = store.enqueue(message("a@m.nz", "b@m.nz"), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    entry = store.record(entry_id, {"a@m.nz": UNKNOWN, "b@m.nz": permanent("x", "y")}, NOW)
    assert entry.state is State.BOUNCED and entry.pending() == ()


def test_untried_recipients_are_unchanged(store: QueueStore) -> None:
    """A worker that tried only some recipients leaves the others pending and untouched."""
    entry_id = store.enqueue(message("a@m.nz", "b@m.nz"), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    entry = store.record(entry_id, {"a@m.nz": ok()}, NOW)
    assert entry.state is State.DEFERRED and entry.pending() == ("b@m.nz",)
    assert entry.recipients[1].attempts == 0 and entry.recipients[1].last_reply is None


def test_record_refuses_wrong_state_and_strangers(store: QueueStore) -> None:
    """Only a claimed entry's pending recipients can be recorded; nothing changes otherwise."""
    entry_id = store.enqueue(message("a@m.nz"), NOW)
    with pytest.raises(QueueError) as not_active:
        store.record(entry_id, {"a@m.nz": ok()}, NOW)
    assert not_active.value.reason is QueueReason.BAD_STATE
    store.claim(Direction.OUTBOUND, NOW)
    with pytest.raises(QueueError) as stranger:
        store.record(entry_id, {"a@m.nz": ok(), "eve@evil.example": ok()}, NOW)
    assert stranger.value.reason is QueueReason.BAD_STATE
    entry = store.get(entry_id)
    assert entry is not None and entry.state is State.ACTIVE and entry.pending() == ("a@m.nz",)
    with pytest.raises(QueueError) as missing:
        store.record("0" * 24, {}, NOW)
    assert missing.value.reason is QueueReason.NOT_FOUND


def test_defer_follows_the_schedule_then_expires(store: QueueStore) -> None:
    """A peer down for days: retries on the schedule, a last try at the deadline, then expiry."""
    entry_id = store.enqueue(message("a@m.nz", "b@m.nz"), NOW)
    now, due_times = NOW, []
    while True:
        claimed = store.claim(Direction.OUTBOUND, now)
        assert [e.id for e in claimed] == [entry_id]
        entry = store.defer(entry_id, DOWN, now)
        if entry.state is not State.DEFERRED:
            break
        assert entry.next_attempt_at is not None
        due_times.append(entry.next_attempt_at - now)
        now = entry.next_attempt_at
    assert due_times[:6] == [*RETRY.schedule, RETRY.schedule[-1]]
    assert now == NOW + RETRY.max_lifetime
    assert entry.state is State.BOUNCED and entry.reason == "expired"
    assert all(r.reason == "expired" for r in entry.recipients)
    assert all(r.last_reply == DOWN.line() for r in entry.recipients)
    assert [e.event for e in store.events(entry_id)][-2:] == ["expired", "expired"]


def test_expiry_keeps_delivered_recipients(store: QueueStore) -> None:
    """Expiry bounces only what is pending; an entry with a delivery ends DELIVERED."""
    entry_id = store.enqueue(message("a@m.nz", "b@m.nz"), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(entry_id, {"a@m.nz": ok(), "b@m.nz": BUSY}, NOW)
    late = NOW + RETRY.max_lifetime
    store.claim(Direction.OUTBOUND, late)
    entry = store.record(entry_id, {}, late)
    assert entry.state is State.DELIVERED
    assert [r.disposition for r in entry.recipients] == [Disposition.DELIVERED, Disposition.BOUNCED]
    expired = [e for e in store.events(entry_id) if e.event == "expired"]
    assert [(e.recipient, e.reason) for e in expired] == [("b@m.nz", "expired")]


def test_defer_needs_a_temporary_reply(store: QueueStore) -> None:
    """A whole-attempt failure passed to defer must be temporary; a 5xx is a programming error."""
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    with pytest.raises(ValueError, match="temporary"):
        store.defer(entry_id, UNKNOWN, NOW)


def test_warnings_due_once(store: QueueStore) -> None:
    """A deferred entry older than warn_after is listed once; notices and <> mail never are."""
    mail = store.enqueue(message(), NOW)
    notice = store.enqueue(message(kind="notice", mail_from=""), NOW)
    bounce = store.enqueue(message(mail_from=""), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    for entry_id in (mail, notice, bounce):
        store.defer(entry_id, DOWN, NOW)
    assert store.warnings_due(NOW + RETRY.warn_after - timedelta(seconds=1)) == []
    later = NOW + RETRY.warn_after
    assert [e.id for e in store.warnings_due(later)] == [mail]
    assert store.mark_warned(mail, later).warned
    assert store.warnings_due(later) == []
    assert store.events(mail)[-1].event == "warned"


def test_list_counts_and_events(store: QueueStore) -> None:
    """Operators see entries by state and direction, counts per state, and free-form events."""
    outbound = store.enqueue(message(), NOW)
    inbound = store.enqueue(message(direction=Direction.INBOUND), NOW + timedelta(seconds=1))
    store.claim(Direction.INBOUND, NOW + timedelta(seconds=1))
    assert [e.id for e in store.list()] == [outbound, inbound]
    assert [e.id for e in store.list(states=[State.ACTIVE])] == [inbound]
    assert [e.id for e in store.list(direction=Direction.OUTBOUND)] == [outbound]
    assert store.list(limit=1)[0].id == outbound
    counts = store.counts()
    assert counts[State.INCOMING] == 1 and counts[State.ACTIVE] == 1
    assert sum(counts.values()) == 2 and set(counts) == set(State)

    store.add_event(outbound, "notice-failed", NOW, recipient="bob@m.nz", detail="notice 1")
    last = store.events(outbound)[-1]
    assert (last.event, last.recipient, last.detail, last.time) == (
        "notice-failed",
        "bob@m.nz",
        "notice 1",
        NOW,
    )
    with pytest.raises(QueueError) as missing:
        store.add_event("f" * 24, "x", NOW)
    assert missing.value.reason is QueueReason.NOT_FOUND
    assert store.get("f" * 24) is None
    with pytest.raises(QueueError):
        store.body("f" * 24)


def test_idempotency_keys(store: QueueStore) -> None:
    """A delivery key is new once; afterwards it is known until forgotten."""
    key = "<m1@agency.govt.nz>:sha256:abc:bob@ministry.govt.nz"
    assert not store.seen(key)
    assert store.remember(key, NOW)
    assert store.seen(key)
    assert not store.remember(key, NOW + timedelta(hours=1))
    assert store.remember("other", NOW + timedelta(days=2))
    assert store.forget_before(NOW + timedelta(days=1)) == 1
    assert not store.seen(key) and store.seen("other")
    with pytest.raises(ValueError):
        store.remember("", NOW)


def test_record_adds_events_and_keys_in_the_same_transaction(store: QueueStore) -> None:
    """One commit per attempt: the outcome, the attempt's events and its keys land together."""
    entry_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(
        entry_id,
        {"bob@ministry.govt.nz": ok()},
        NOW,
        events=[("verified", "signed by agency")],
        remember=["key-1"],
    )
    assert [e.event for e in store.events(entry_id)][-2:] == ["verified", "delivered"]
    assert store.seen("key-1")
    assert not store.remember("key-1", NOW)


def test_enqueue_many_and_record_many_share_one_transaction(store: QueueStore) -> None:
    """Group commit: several entries or attempts in one commit, all or none."""
    ids = store.enqueue_many([message(), message("carol@ministry.govt.nz")], NOW)
    assert {e.id for e in store.claim(Direction.OUTBOUND, NOW)} == set(ids)
    attempts = [Attempt(i, {store.get(i).pending()[0]: ok()}) for i in ids]  # type: ignore[union-attr]
    assert [e.state for e in store.record_many(attempts, NOW)] == [State.DELIVERED] * 2
    with pytest.raises(QueueError):  # an entry no longer active spoils the whole batch
        store.record_many(attempts, NOW)


def test_quarantine_keeps_the_reason_on_the_entry(store: QueueStore) -> None:
    """An operator listing quarantined entries sees each one's reason code."""
    entry_id = store.enqueue(message(direction=Direction.INBOUND), NOW)
    store.claim(Direction.INBOUND, NOW)
    entry = store.quarantine(entry_id, "integrity-failed", "GCM tag mismatch", NOW)
    assert (entry.state, entry.reason) == (State.QUARANTINED, "integrity-failed")


def test_a_starting_node_recovers_only_the_entries_it_claimed(store: QueueStore) -> None:
    """Two nodes share the queue: a restart of one takes back its own work, not the other's."""
    first = store.enqueue(message(), NOW)
    second = store.enqueue(message("carol@ministry.govt.nz"), NOW)
    [mine] = store.claim(Direction.OUTBOUND, NOW, 1, owner="gw-a")
    [theirs] = store.claim(Direction.OUTBOUND, NOW, 1, owner="gw-b")
    assert {mine.id, theirs.id} == {first, second}
    assert store.recover(NOW, owner="gw-a") == 1
    assert store.get(mine.id).state is State.DEFERRED  # type: ignore[union-attr]
    assert store.get(theirs.id).state is State.ACTIVE  # type: ignore[union-attr]
    assert store.recover(NOW) == 1  # the operator's "all", for a node gone for good


def test_waiting_counts_entries_no_worker_took_yet(store: QueueStore) -> None:
    """``waiting`` is the workers' backlog: INCOMING entries of both directions, not the
    ones claimed or settled (in-flow control reads it before MAIL)."""
    assert store.waiting() == 0
    for _ in range(3):
        store.enqueue(message(), NOW)
    store.enqueue(message(direction=Direction.INBOUND), NOW)
    assert store.waiting() == 4
    [claimed] = store.claim(Direction.OUTBOUND, NOW, limit=1)
    assert store.waiting() == 3
    store.record(claimed.id, {"bob@ministry.govt.nz": ok()}, NOW)
    assert store.waiting() == 3
