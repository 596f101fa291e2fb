"""The operator service layer on a real queue (SQLite in tmp_path) and real accounts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from securemail import operations
from securemail.accounts.node import Accounts
from securemail.accounts.throttle import LoginThrottle, ThrottlePolicy, login_keys
from securemail.operations import OperationError, OperationReason, QueueFilter
from securemail.queue import Direction, QueueError, QueueStore, State
from securemail.replies import Reply, ok
from tests.accounts.conftest import ALICE, Clock, open_at
from tests.node.conftest import Federation
from tests.queue.conftest import NOW, message

BODY = b"Subject: Rates notice\r\nFrom: alice@agency.govt.nz\r\n\r\nsecret body text\r\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}") as opened:
        yield opened


def deferred(store: QueueStore, *recipients: str) -> str:
    """An outbound entry tried once: its peer was down (connect-failed)."""
    entry_id = store.enqueue(message(*recipients, body=BODY), NOW)
    [claimed] = store.claim(Direction.OUTBOUND, NOW)
    store.defer(claimed.id, Reply(451, "4.4.1", "peer down", "connect-failed"), NOW)
    return entry_id


def test_filters_by_state_reason_and_text(store: QueueStore) -> None:
    """The queue filters on state, reason code and text in sender, recipient or Message-ID."""
    first = deferred(store, "bob@ministry.govt.nz")
    later = NOW + timedelta(seconds=1)
    second = store.enqueue(message("carol@council.govt.nz", mail_from="dan@agency.govt.nz"), later)

    def ids(**wanted: object) -> list[str]:
        page = operations.list_entries(store, QueueFilter(**wanted))  # type: ignore[arg-type]
        return [e.id for e in page.entries]

    assert ids() == [second, first]  # newest first
    assert ids(oldest_first=True) == [first, second]
    assert ids(states=(State.DEFERRED,)) == [first]
    assert ids(reason="connect-failed") == [first]
    assert ids(text="CAROL@") == [second]
    assert ids(text="DAN@agency") == [second]
    assert ids(text="test-1@agency") == [second, first]
    assert ids(text="%") == []  # a literal, not a wildcard


def test_a_listing_pages_and_says_when_more_exist(store: QueueStore) -> None:
    """Past one page, a listing says how many there are and where the next page starts;
    pages follow each other without gaps or repeats, newest first by default."""
    made = [store.enqueue(message(), NOW + timedelta(seconds=n)) for n in range(7)]
    first = operations.list_entries(store, QueueFilter(limit=3))
    assert [e.id for e in first.entries] == made[:-4:-1]
    assert (first.total, first.more, first.next_offset) == (7, True, 3)
    seen = [e.id for e in first.entries]
    offset = first.next_offset
    while offset is not None:
        page = operations.list_entries(store, QueueFilter(limit=3, offset=offset))
        seen += [e.id for e in page.entries]
        offset = page.next_offset
    assert seen == made[::-1]
    last = operations.list_entries(store, QueueFilter(limit=3, offset=6))
    assert (len(last.entries), last.more, last.next_offset) == (1, False, None)
    oldest = operations.list_entries(store, QueueFilter(limit=2, oldest_first=True))
    assert [e.id for e in oldest.entries] == made[:2]
    for bad in ({"limit": 0}, {"limit": operations.MAX_PAGE + 1}, {"offset": -1}):
        with pytest.raises(OperationError) as refused:
            QueueFilter(**bad)  # type: ignore[arg-type]
        assert refused.value.reason is OperationReason.BAD_PAGE


def test_actions_apply_only_where_the_state_allows(store: QueueStore) -> None:
    """A deferred entry can be held, retried or deleted; a delivered one only deleted."""
    waiting = store.get(deferred(store))
    delivered_id = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    delivered = store.record(delivered_id, {"bob@ministry.govt.nz": ok()}, NOW)
    assert waiting is not None
    assert operations.actions_for(waiting) == ("hold", "retry", "delete")
    assert operations.actions_for(delivered) == ("delete",)


def test_detail_shows_headers_never_the_body(store: QueueStore) -> None:
    """An entry's detail has its header block and history, and not one byte of its body."""
    entry_id = deferred(store)
    detail = operations.entry_detail(store, entry_id)
    assert ("Subject", "Rates notice") in detail.headers
    assert "secret body text" not in repr(detail)
    assert [e.event for e in detail.events][:1] == ["accepted"]
    with pytest.raises(OperationError) as refused:
        operations.entry_detail(store, "nope")
    assert refused.value.reason is OperationReason.NOT_FOUND


def test_hold_release_retry_and_delete(store: QueueStore) -> None:
    """Hold, release and retry move the entry; delete removes it; wrong states are refused."""
    entry_id = deferred(store)
    assert operations.hold(store, entry_id, NOW).state is State.HELD
    assert operations.release(store, entry_id, NOW).state is State.DEFERRED
    assert operations.retry(store, entry_id, NOW).state is State.DEFERRED
    with pytest.raises(QueueError):
        operations.release(store, entry_id, NOW)  # not held
    operations.delete(store, entry_id, NOW)
    assert store.get(entry_id) is None
    with pytest.raises(OperationError):
        operations.delete(store, entry_id, NOW)


def test_failures_are_recent_bounces_and_quarantine(store: QueueStore) -> None:
    """Recent failures list bounced and quarantined entries changed within the hours asked."""
    old = store.enqueue(message(), NOW - timedelta(days=3))
    store.claim(Direction.OUTBOUND, NOW - timedelta(days=3))
    store.quarantine(old, "integrity-failed", "bad signature", NOW - timedelta(days=3))
    fresh = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.quarantine(fresh, "integrity-failed", "bad signature", NOW)
    assert [e.id for e in operations.recent_failures(store, NOW, hours=24).entries] == [fresh]
    assert [e.id for e in operations.quarantine(store).entries] == [fresh, old]


def test_track_limits_an_account_to_its_own_messages(store: QueueStore) -> None:
    """Tracking shows each recipient's timeline, and a sender filter hides others' mail."""
    deferred(store, "bob@ministry.govt.nz")
    [track] = operations.track(store, "test-1@agency.govt.nz")
    assert track.recipient == "bob@ministry.govt.nz" and track.receipt == "none"
    assert [s.what for s in track.timeline] == ["queued", "deferred"]
    assert operations.track(store, "<test-1@agency.govt.nz>", sender=["ALICE@agency.govt.nz"])
    with pytest.raises(OperationError) as refused:
        operations.track(store, "test-1@agency.govt.nz", sender=["eve@agency.govt.nz"])
    assert refused.value.reason is OperationReason.NOT_SENT


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    with open_at(url, tmp_path / "accounts.log", Clock(NOW)) as opened:
        yield opened


def test_lockouts_listed_and_unlocked(accounts: Accounts) -> None:
    """Locked names and sources are listed with their failures, and an operator unlocks them."""
    throttle = LoginThrottle(accounts.engine, ThrottlePolicy())
    keys = login_keys(ALICE, "192.0.2.7")
    for _ in range(5):
        throttle.fail(keys, NOW)
    [locked] = operations.lockouts(accounts.engine, NOW)
    assert (locked.key.scope, locked.key.value, locked.failures) == ("account", ALICE, 5)
    operations.unlock(accounts.engine, accounts.service, "account", ALICE)
    assert operations.lockouts(accounts.engine, NOW) == []
    with pytest.raises(OperationError) as refused:
        operations.unlock(accounts.engine, accounts.service, "account", ALICE)
    assert refused.value.reason is OperationReason.NOT_LOCKED


def test_status_and_keys_of_a_founded_node(federation: Federation, store: QueueStore) -> None:
    """Status names the node's organisations and counts; keys lists each org's certificates."""
    config = federation.config("agency")
    deferred(store)
    status = operations.node_status(config, store, None, NOW)
    assert status.counts[State.DEFERRED] == 1 and status.directory is None
    served = [org_id for org_id, _, _ in status.organisations]
    assert served == [o.org_id for o in config.organisations]
    [org, *_] = operations.node_keys(config, NOW)
    roles = {c.role for c in org.certificates}
    assert {"signing", "encryption"} <= roles
    assert all(not c.expired and c.days_left > 0 for c in org.certificates)
