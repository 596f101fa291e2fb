"""Receipt tracking on both engines: one final outcome per recipient, evidence kept."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import TypeVar

import pytest

from securemail.queue import (
    Attempt,
    Direction,
    NewMessage,
    NewSignature,
    QueueError,
    QueueReason,
    QueueStore,
    ReceiptOutcome,
    ReceiptState,
    ReceiptTaken,
    State,
)
from securemail.queue.schema import message_row, messages, recipients
from securemail.replies import ok, permanent
from securemail.storage.engine import connect, upgrade
from tests.queue.conftest import NOW, message

WINDOW = timedelta(hours=1)
BOB, CAROL = "bob@ministry.govt.nz", "carol@ministry.govt.nz"
RECEIPT, EVIDENCE = b"\x30\x03\x02\x01\x01", '{"recipient": "bob@ministry.govt.nz"}'
T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")


def signature(*to: str, identifier: str = "C0FFEE01", window: timedelta = WINDOW) -> NewSignature:
    """A receipt-requesting signature for the ministry's gateway."""
    return NewSignature(
        content_identifier=identifier,
        peer_org="ministry",
        recipients=to or (BOB,),
        signed_data=b"\x30\x80signed-data\x00\x00",
        basis='{"content_type": "data"}',
        window=window,
    )


def notice(to: str = "alice@agency.govt.nz") -> NewMessage:
    """A notice to the original sender, as a follow-up of an outcome."""
    return message(to, kind="notice", mail_from="")


def relayed(store: QueueStore, *to: str, identifier: str = "c0ffee01") -> str:
    """An entry relayed with 250 for every recipient under one receipt-requesting signature."""
    entry_id = store.enqueue(message(*(to or (BOB,))), NOW)
    entry = store.claim(Direction.OUTBOUND, NOW)[0]
    sent = signature(*entry.pending(), identifier=identifier)
    store.record(entry_id, dict.fromkeys(entry.pending(), ok()), NOW, signatures=[sent])
    return entry_id


def state_of(store: QueueStore, entry_id: str, address: str = BOB) -> ReceiptState:
    entry = store.get(entry_id)
    assert entry is not None
    return next(r.receipt_state for r in entry.recipients if r.address == address)


def test_record_with_a_signature_awaits_receipts(store: QueueStore) -> None:
    """A recipient relayed under a receipt request awaits it for the window; a refused one not."""
    entry_id = store.enqueue(message(BOB, CAROL), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    results = {BOB: ok(), CAROL: permanent("unknown-recipient", "no such user")}
    entry = store.record(entry_id, results, NOW, signatures=[signature(BOB, CAROL)])
    assert [r.receipt_state for r in entry.recipients] == [ReceiptState.AWAITING, ReceiptState.NONE]
    [record] = [r for r in store.receipt_records("<test-1@agency.govt.nz>") if r.recipient == BOB]
    assert (record.deadline, record.receipt, record.mail_from) == (
        NOW + WINDOW,
        None,
        "alice@agency.govt.nz",
    )
    relayed_events = [e for e in store.events(entry_id) if e.event == "relayed"]
    assert [(e.recipient, e.detail) for e in relayed_events] == [(BOB, "receipt requested")]
    kept = store.signature("C0FFEE01")
    assert kept is not None and kept == store.signature("c0ffee01")
    assert (kept.entry_id, kept.content_identifier, kept.recipients) == (
        entry_id,
        "c0ffee01",
        (BOB, CAROL),
    )
    assert kept.signed_data == signature().signed_data and kept.created_at == NOW
    assert store.signatures_for(entry_id) == [kept]


def test_a_receipt_is_accepted_once(store: QueueStore) -> None:
    """The first receipt settles the recipient with its evidence; a second copy changes nothing."""
    entry_id = relayed(store)
    later = NOW + timedelta(minutes=5)
    assert store.accept_receipt("c0ffee01", BOB.upper(), RECEIPT, EVIDENCE, later) == "accepted"
    [record] = store.receipt_records("<test-1@agency.govt.nz>")
    assert (record.state, record.receipt, record.evidence, record.receipted_at) == (
        ReceiptState.RECEIPTED,
        RECEIPT,
        EVIDENCE,
        later,
    )
    again = store.accept_receipt("c0ffee01", BOB, b"other", "{}", later + WINDOW)
    assert again is ReceiptOutcome.DUPLICATE
    assert store.receipt_records("<test-1@agency.govt.nz>") == [record]
    assert [(e.event, e.recipient) for e in store.events(entry_id)][-1] == ("receipted", BOB)
    assert store.receipts_due(NOW + 2 * WINDOW) == []


def test_the_senders_notice_is_queued_with_the_receipt(store: QueueStore) -> None:
    """The notice to the sender commits with the accepted receipt; a duplicate queues none."""
    entry_id = relayed(store)
    outcome = store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW, enqueue=[notice()])
    assert outcome is ReceiptOutcome.ACCEPTED
    follow_up = store.events(entry_id)[-1]
    assert follow_up.event == "queued-follow-up" and store.get(follow_up.detail) is not None
    store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW, enqueue=[notice()])
    store.accept_receipt("ffff", BOB, RECEIPT, EVIDENCE, NOW, enqueue=[notice()])
    assert len([e for e in store.list() if e.kind == "notice"]) == 1


def test_receipts_taken_together_answer_as_one_by_one(store: QueueStore) -> None:
    """Receipts settled in one transaction each get the answer they would get alone: the
    second copy for a recipient is a duplicate (and queues no notice), a stranger unknown."""
    first = relayed(store, BOB, CAROL)
    taken = [
        ReceiptTaken("c0ffee01", BOB, RECEIPT, EVIDENCE, (notice(),)),
        ReceiptTaken("c0ffee01", BOB, b"other", "{}", (notice(),)),
        ReceiptTaken("ffff", BOB, RECEIPT, EVIDENCE, (notice(),)),
        ReceiptTaken("c0ffee01", CAROL, RECEIPT, EVIDENCE),
    ]
    outcomes = store.accept_receipts(taken, NOW)
    assert outcomes == ["accepted", "duplicate", "unknown", "accepted"]
    assert (state_of(store, first), state_of(store, first, CAROL)) == (ReceiptState.RECEIPTED,) * 2
    assert len([e for e in store.list() if e.kind == "notice"]) == 1


def test_no_receipt_in_time_expires_once_then_receipts_are_late(store: QueueStore) -> None:
    """At the deadline the recipient expires, its failure notice queued; a later receipt is late."""
    entry_id = relayed(store)
    assert store.receipts_due(NOW + WINDOW - timedelta(seconds=1)) == []
    [due] = store.receipts_due(NOW + WINDOW)
    assert (due.entry_id, due.recipient, due.state) == (entry_id, BOB, ReceiptState.AWAITING)
    assert store.expire_receipt(entry_id, BOB, NOW + WINDOW, enqueue=[notice()])
    assert not store.expire_receipt(entry_id, BOB, NOW + WINDOW, enqueue=[notice()])
    assert len(store.list(direction=Direction.OUTBOUND, states=[State.INCOMING])) == 1
    assert store.receipts_due(NOW + 2 * WINDOW) == []

    late = store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW + 2 * WINDOW)
    assert late is ReceiptOutcome.LATE and state_of(store, entry_id) is ReceiptState.EXPIRED
    events = [e.event for e in store.events(entry_id)]
    assert events[-3:] == ["receipt-expired", "queued-follow-up", "receipt-late"]


def test_a_receipt_for_a_refused_recipient_is_late(store: QueueStore) -> None:
    """A receipt for a recipient that was never relayed settles nothing and is logged."""
    entry_id = store.enqueue(message(BOB), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    refused = {BOB: permanent("unknown-recipient", "no such user")}
    store.record(entry_id, refused, NOW, signatures=[signature(BOB)])
    assert store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW) is ReceiptOutcome.LATE
    assert state_of(store, entry_id) is ReceiptState.NONE
    assert store.events(entry_id)[-1].event == "receipt-late"


def test_unknown_signatures_and_strangers_are_unknown(store: QueueStore) -> None:
    """A receipt for a signature we never made, or for a recipient it did not go to, is unknown."""
    entry_id = store.enqueue(message(BOB, CAROL), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    copies = [signature(BOB, identifier="aa01"), signature(CAROL, identifier="bb02")]
    store.record(entry_id, {BOB: ok(), CAROL: ok()}, NOW, signatures=copies)
    history = store.events(entry_id)
    assert store.accept_receipt("ffff", BOB, RECEIPT, EVIDENCE, NOW) is ReceiptOutcome.UNKNOWN
    assert store.accept_receipt("aa01", CAROL, RECEIPT, EVIDENCE, NOW) is ReceiptOutcome.UNKNOWN
    assert store.events(entry_id) == history
    assert state_of(store, entry_id, CAROL) is ReceiptState.AWAITING
    assert store.signature("ffff") is None


def _race(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """Run two calls on two threads, released together."""
    start = threading.Barrier(2)

    def after_start(call: Callable[[], V]) -> V:
        start.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(2) as pool:
        one, two = pool.submit(after_start, first), pool.submit(after_start, second)
        return one.result(timeout=60), two.result(timeout=60)


def test_expiry_racing_a_receipt_has_one_winner(store: QueueStore, url: str) -> None:
    """A receipt and the expiry arriving together on two nodes: exactly one outcome wins."""
    at, expiries = NOW + WINDOW, 0
    with QueueStore.open(url) as other:
        for n in range(8):
            entry_id = relayed(store, identifier=f"{n:04x}")
            outcome, expired = _race(
                partial(store.accept_receipt, f"{n:04x}", BOB, RECEIPT, EVIDENCE, at),
                partial(other.expire_receipt, entry_id, BOB, at, enqueue=[notice()]),
            )
            winner = (
                (ReceiptOutcome.LATE, ReceiptState.EXPIRED)
                if expired
                else (
                    ReceiptOutcome.ACCEPTED,
                    ReceiptState.RECEIPTED,
                )
            )
            assert (outcome, state_of(store, entry_id)) == winner
            expiries += bool(expired)
    assert len([e for e in store.list() if e.kind == "notice"]) == expiries


def test_two_copies_of_a_receipt_cannot_both_win(store: QueueStore, url: str) -> None:
    """The same receipt taken by two nodes at once is accepted once and a duplicate once."""
    with QueueStore.open(url) as other:
        entry_id = relayed(store)
        outcomes = _race(
            lambda: store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW),
            lambda: other.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW),
        )
    assert sorted(map(str, outcomes)) == ["accepted", "duplicate"]
    assert [e.event for e in store.events(entry_id)].count("receipted") == 1


def test_follow_ups_are_queued_with_the_outcome(store: QueueStore) -> None:
    """Notices an outcome causes are queued in the same commit and named in the entry's history."""
    entry_id = store.enqueue(message(BOB), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    refused = {BOB: permanent("unknown-recipient", "no such user")}
    store.record_many([Attempt(entry_id, refused, enqueue=(notice(), notice("x@agency.nz")))], NOW)
    follow_up = store.events(entry_id)[-1]
    ids = follow_up.detail.split(", ")
    assert follow_up.event == "queued-follow-up" and len(ids) == 2
    for notice_id in ids:
        queued = store.get(notice_id)
        assert queued is not None and (queued.state, queued.kind) == (State.INCOMING, "notice")
        assert [e.event for e in store.events(notice_id)] == ["accepted"]


def test_a_failing_follow_up_records_nothing(store: QueueStore) -> None:
    """If a follow-up cannot be stored, the attempt's outcome and signatures are not either."""
    entry_id = store.enqueue(message(BOB), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    broken = notice()
    object.__setattr__(broken, "org_id", None)  # NOT NULL: the database refuses the row
    with pytest.raises(QueueError) as refused:
        store.record(entry_id, {BOB: ok()}, NOW, signatures=[signature()], enqueue=[broken])
    assert refused.value.reason is QueueReason.UNAVAILABLE
    entry = store.get(entry_id)
    assert entry is not None and (entry.state, entry.pending()) == (State.ACTIVE, (BOB,))
    assert entry.recipients[0].receipt_state is ReceiptState.NONE
    assert store.signature("c0ffee01") is None and len(store.list()) == 1
    assert [e.event for e in store.events(entry_id)] == ["accepted"]


def test_a_signature_names_only_the_entrys_recipients(store: QueueStore) -> None:
    """A signature claiming an address that is not on the entry is refused with the attempt."""
    entry_id = store.enqueue(message(BOB), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    with pytest.raises(QueueError) as refused:
        store.record(entry_id, {BOB: ok()}, NOW, signatures=[signature(BOB, "eve@evil.example")])
    assert refused.value.reason is QueueReason.BAD_STATE
    assert store.signatures_for(entry_id) == []


def test_purge_keeps_evidence_unless_asked(store: QueueStore) -> None:
    """Purging old entries keeps those holding or awaiting receipts unless evidence is included."""
    receipted = relayed(store, identifier="01")
    store.accept_receipt("01", BOB, RECEIPT, EVIDENCE, NOW)
    awaiting = relayed(store, identifier="02")
    expired = relayed(store, identifier="03")
    store.expire_receipt(expired, BOB, NOW + WINDOW)
    later = NOW + timedelta(days=30)
    assert store.purge([State.DELIVERED], later) == 1
    assert store.get(expired) is None and store.signatures_for(expired) == []
    assert store.get(receipted) is not None and store.get(awaiting) is not None
    assert store.purge([State.DELIVERED], later, include_evidence=True) == 2
    assert store.list() == [] and store.signature("01") is None


def test_signatures_outlive_a_deleted_entry(store: QueueStore) -> None:
    """An operator deleting an entry keeps the signed data we sent (evidence)."""
    entry_id = relayed(store)
    assert store.delete(entry_id, NOW)
    assert [s.entry_id for s in store.signatures_for(entry_id)] == [entry_id]
    late = store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW)
    assert late is ReceiptOutcome.LATE and store.events(entry_id)[-1].event == "receipt-late"


def test_tracking_by_message_id(store: QueueStore) -> None:
    """`securemail track` finds every entry and recipient of one Message-ID, in order."""
    first = relayed(store, BOB, CAROL, identifier="01")
    second = store.enqueue(message("dave@other.nz"), NOW + timedelta(seconds=1))
    store.enqueue(
        NewMessage(Direction.OUTBOUND, "agency", "a@agency.nz", ("x@y.nz",), b"x", "c", "<o@x>"),
        NOW,
    )
    assert [e.id for e in store.entries_by_message_id("<test-1@agency.govt.nz>")] == [
        first,
        second,
    ]
    records = store.receipt_records("<test-1@agency.govt.nz>")
    assert [(r.entry_id, r.recipient, r.state) for r in records] == [
        (first, BOB, ReceiptState.AWAITING),
        (first, CAROL, ReceiptState.AWAITING),
        (second, "dave@other.nz", ReceiptState.NONE),
    ]
    assert store.receipt_records("<none@x>") == [] and store.entries_by_message_id("<none>") == []


def test_upgrade_from_0001_keeps_the_queue(url: str) -> None:
    """A queue written by the first schema is upgraded in place and its entries go on."""
    engine = connect(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        row = message_row("0001old", message(BOB), NOW)
        del row["priority"], row["assurance"]  # added by 0004 and 0010
        conn.execute(messages.insert().values(row))
        old = {"entry_id": "0001old", "position": 0, "address": BOB, "disposition": "pending"}
        conn.execute(recipients.insert().values(old | {"attempts": 0, "updated_at": NOW}))
    engine.dispose()
    with QueueStore.open(url) as store:
        entry = store.get("0001old")
        assert entry is not None and entry.pending() == (BOB,)
        assert entry.recipients[0].receipt_state is ReceiptState.NONE
        assert [e.id for e in store.claim(Direction.OUTBOUND, NOW)] == ["0001old"]
        store.record("0001old", {BOB: ok()}, NOW, signatures=[signature()])
        assert store.accept_receipt("c0ffee01", BOB, RECEIPT, EVIDENCE, NOW) == "accepted"


BAD_SIGNATURES = [
    ("", (BOB,), WINDOW),
    ("abc", (BOB,), WINDOW),
    ("zz", (BOB,), WINDOW),
    ("a b", (BOB,), WINDOW),
    ("ab" * 129, (BOB,), WINDOW),
    ("ab", (), WINDOW),
    ("ab", (BOB,), timedelta(0)),
]


@pytest.mark.parametrize(("identifier", "to", "window"), BAD_SIGNATURES)
def test_a_new_signature_is_checked(
    identifier: str, to: tuple[str, ...], window: timedelta
) -> None:
    """A signature needs a hex identifier of 1 to 128 bytes, a recipient and a positive window."""
    with pytest.raises(ValueError):
        NewSignature(identifier, "ministry", to, b"x", "{}", window)


def test_a_receipt_for_a_copy_whose_250_was_lost_settles_the_recipient(store: QueueStore) -> None:
    """The peer delivered a copy but its 250 was lost: its receipt, arriving while we retry,
    is accepted, and the later 250 for the retried copy does not reopen the wait."""
    from securemail.replies import temporary  # noqa: PLC0415

    entry_id = store.enqueue(message(BOB), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    first = signature(BOB, identifier="0001")
    lost = {BOB: temporary("protocol-error", "connection lost after DATA")}
    store.record(entry_id, lost, NOW, signatures=[first])
    assert store.accept_receipt("0001", BOB, RECEIPT, EVIDENCE, NOW) is ReceiptOutcome.ACCEPTED
    store.retry(entry_id, NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(entry_id, {BOB: ok()}, NOW, signatures=[signature(BOB, identifier="0002")])
    assert state_of(store, entry_id) is ReceiptState.RECEIPTED
    assert store.receipts_due(NOW + 2 * WINDOW) == []
