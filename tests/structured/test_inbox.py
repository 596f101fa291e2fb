"""The pull queue on both engines: kept once per delivery, listed per organisation, taken,
purged after its retention."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select

from securemail.node.structured import run_inbox_purge
from securemail.queue import QueueStore
from securemail.storage.engine import connect
from securemail.structured.inbox import PullInbox, PullQueue, key_of, structured_inbox

T = TypeVar("T")

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
    queue = PullQueue(_inbox(url), "council", lambda: NOW, _off_loop)
    assert asyncio.run(queue.deliver(_envelope(1), b"<a/>")).code == 250
    assert asyncio.run(queue.deliver(_envelope(1), b"<a/>")).code == 250
    assert len(queue.inbox.waiting("council")) == 1
    queue.inbox.close()


def test_taken_rows_are_purged_after_the_retention_and_waiting_rows_never(url: str) -> None:
    """purge_taken() deletes only rows taken before the cut, in batches; untaken rows stay."""
    inbox = _inbox(url)
    for n in range(5):
        inbox.put("council", _envelope(n), NOW)
    keys = [key_of(str(_envelope(n)["delivery_id"])) for n in range(5)]
    for n in (0, 1, 2):
        assert inbox.take("council", keys[n], NOW + timedelta(days=n))
    assert inbox.purge_taken(NOW) == 0  # taken at the cut itself: not before it
    assert inbox.purge_taken(NOW + timedelta(days=2), limit=1) == 1
    assert inbox.purge_taken(NOW + timedelta(days=2)) == 1
    assert inbox.purge_taken(NOW + timedelta(days=30)) == 1
    assert inbox.purge_taken(NOW + timedelta(days=30)) == 0
    assert [w["key"] for w in inbox.waiting("council")] == sorted(keys[3:])
    assert not inbox.take("council", keys[0], NOW)  # gone, not waiting again
    inbox.close()


def test_the_node_purge_loop_deletes_taken_rows_past_keep_taken(url: str) -> None:
    """run_inbox_purge() with keep_taken 1 h: a row taken 2 h ago goes, one taken now stays."""
    inbox = _inbox(url)
    inbox.put("council", _envelope(1), NOW)
    inbox.put("council", _envelope(2), NOW)
    inbox.take("council", key_of(str(_envelope(1)["delivery_id"])), NOW - timedelta(hours=2))
    inbox.take("council", key_of(str(_envelope(2)["delivery_id"])), NOW)

    async def one_round() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_inbox_purge(inbox, _off_loop, timedelta(hours=1), lambda: NOW, stop)
        )
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(one_round())
    engine = connect(url)
    try:
        with engine.connect() as conn:
            left = [k for (k,) in conn.execute(select(structured_inbox.c.delivery_id))]
    finally:
        engine.dispose()
    assert left == [_envelope(2)["delivery_id"]]
    inbox.close()


async def _off_loop(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(call, *args, **kwargs)
