"""Claim priority: SecureMail traffic is dequeued ahead of ordinary mail when both wait."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import insert

from securemail.queue import Direction, NewMessage, QueueStore
from securemail.queue.schema import message_row, messages
from securemail.storage.engine import connect, upgrade
from tests.queue.conftest import NOW, message


def _ordinary() -> NewMessage:
    return dataclasses.replace(
        message("bob@agency.govt.nz", direction=Direction.INBOUND, kind="ordinary"),
        client="ordinary 192.0.2.7",
        priority=1,
    )


def _securemail() -> NewMessage:
    return dataclasses.replace(
        message("bob@agency.govt.nz", direction=Direction.INBOUND), client="peer 192.0.2.9"
    )


def test_securemail_is_claimed_ahead_of_an_ordinary_backlog(store: QueueStore) -> None:
    """With 20 ordinary messages waiting, the 2 SecureMail messages that came later go first."""
    backlog = [store.enqueue(_ordinary(), NOW + timedelta(seconds=i)) for i in range(20)]
    later = NOW + timedelta(minutes=1)
    secure = [store.enqueue(_securemail(), later + timedelta(seconds=i)) for i in range(2)]
    claimed = store.claim(Direction.INBOUND, later + timedelta(minutes=1), 2)
    assert sorted(e.id for e in claimed) == sorted(secure)
    assert {e.priority for e in claimed} == {0}
    rest = store.claim(Direction.INBOUND, later + timedelta(minutes=1), 100)
    assert sorted(e.id for e in rest) == sorted(backlog)


def test_ordinary_mail_keeps_arrival_order_among_itself(store: QueueStore) -> None:
    """Entries of one priority are still claimed oldest first."""
    ids = [store.enqueue(_ordinary(), NOW + timedelta(seconds=i)) for i in range(5)]
    claimed = [store.claim(Direction.INBOUND, NOW + timedelta(minutes=1), 1)[0].id for _ in ids]
    assert claimed == ids


def test_ordinary_mail_is_claimed_when_no_securemail_waits(store: QueueStore) -> None:
    """Priority orders the queue, it never holds ordinary mail back from an idle worker."""
    entry_id = store.enqueue(_ordinary(), NOW)
    [entry] = store.claim(Direction.INBOUND, NOW, 16)
    assert entry.id == entry_id and entry.kind == "ordinary" and entry.priority == 1


def test_priority_is_bounded() -> None:
    """A priority outside 0 to 9 is refused before it reaches the queue."""
    with pytest.raises(ValueError, match="priority"):
        dataclasses.replace(message(), priority=10)
    with pytest.raises(ValueError, match="priority"):
        dataclasses.replace(message(), priority=-1)


def test_entries_queued_before_0004_get_priority_zero(url: str) -> None:
    """Mail already waiting when a node upgrades keeps its place as SecureMail traffic."""
    engine = connect(url)
    upgrade(engine, "0003")
    row = message_row("0003old", _securemail(), NOW)
    for later in ("priority", "assurance"):  # columns of 0004 and 0010
        del row[later]
    with engine.begin() as conn:  # the row names no priority: the 0003 table has none
        conn.execute(insert(messages), row)
    engine.dispose()
    with QueueStore.open(url) as store:
        [entry] = store.list()
        assert entry.priority == 0
