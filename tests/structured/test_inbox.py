"""The pull queue on both engines: kept once per delivery, listed per organisation, taken."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from securemail.queue import QueueStore
from securemail.storage.engine import connect
from securemail.structured.inbox import PullInbox, PullQueue, key_of

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _inbox(url: str) -> PullInbox:
    QueueStore.open(url).close()  # migrates the database, as a node's start does
    return PullInbox(connect(url))


def _envelope(n: int) -> dict[str, object]:
    return {"delivery_id": f"{n:064x}:invoices@council.govt.nz", "document": "PGEvPg=="}


def test_a_delivery_is_kept_once_and_listed_oldest_first(url: str) -> None:
    """put() twice with one delivery id keeps one row; waiting() lists the org's, in order."""
    inbox = _inbox(url)
    assert inbox.put("council", _envelope(2), NOW + timedelta(seconds=1))
    assert inbox.put("council", _envelope(1), NOW)
    assert not inbox.put("council", _envelope(1), NOW + timedelta(seconds=5))
    assert inbox.put("harbour", _envelope(3), NOW)
    waiting = inbox.waiting("council")
    assert [w["delivery_id"] for w in waiting] == [
        _envelope(1)["delivery_id"],
        _envelope(2)["delivery_id"],
    ]
    assert waiting[0]["key"] == key_of(str(_envelope(1)["delivery_id"]))


def test_taken_documents_leave_the_list_and_only_the_owner_may_take(url: str) -> None:
    """take() by another organisation fails; by the owner it succeeds once."""
    inbox = _inbox(url)
    inbox.put("council", _envelope(1), NOW)
    key = key_of(str(_envelope(1)["delivery_id"]))
    assert not inbox.take("harbour", key, NOW)
    assert inbox.take("council", key, NOW)
    assert not inbox.take("council", key, NOW)
    assert inbox.waiting("council") == []


def test_the_pull_queue_target_says_250_once_kept(url: str) -> None:
    """As an application target: 250 once the row is committed, again for a repeat."""
    queue = PullQueue(_inbox(url), "council", lambda: NOW)
    assert asyncio.run(queue.deliver(_envelope(1), b"<a/>")).code == 250
    assert asyncio.run(queue.deliver(_envelope(1), b"<a/>")).code == 250
    assert len(queue.inbox.waiting("council")) == 1
