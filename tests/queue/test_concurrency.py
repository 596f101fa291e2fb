"""Several workers and nodes at once: no entry is ever claimed twice, no enqueue is lost."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from securemail.queue import Direction, QueueStore
from tests.queue.conftest import NOW, message

ENTRIES = 120


def _drain(store: QueueStore, start: threading.Barrier) -> list[str]:
    start.wait(timeout=30)
    claimed: list[str] = []
    while batch := store.claim(Direction.OUTBOUND, NOW + timedelta(hours=1), limit=5):
        claimed += [entry.id for entry in batch]
    return claimed


def test_two_nodes_never_claim_the_same_entry(store: QueueStore, url: str) -> None:
    """Two nodes on one database claiming at once split the queue: each entry claimed once."""
    ids = {store.enqueue(message(), NOW + timedelta(microseconds=n)) for n in range(ENTRIES)}
    start = threading.Barrier(2)
    with QueueStore.open(url) as other, ThreadPoolExecutor(2) as pool:
        first = pool.submit(_drain, store, start)
        second = pool.submit(_drain, other, start)
        mine, theirs = first.result(timeout=60), second.result(timeout=60)
    assert not set(mine) & set(theirs)
    assert len(mine) + len(theirs) == ENTRIES and set(mine) | set(theirs) == ids


def test_enqueue_from_many_threads(store: QueueStore) -> None:
    """Receive sessions enqueue from several threads at once; every message is stored whole."""
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: store.enqueue(message(), NOW), range(64), timeout=60))
    assert len(set(ids)) == 64
    assert {e.id for e in store.list(limit=1000)} == set(ids)


def _remember_all(store: QueueStore, keys: list[str], start: threading.Barrier) -> list[str]:
    start.wait(timeout=30)
    return [key for key in keys if store.remember(key, NOW)]


def test_racing_nodes_store_each_key_once(store: QueueStore, url: str) -> None:
    """Two nodes remembering the same delivery keys at once: each key is new for exactly one."""
    keys = [f"<m{n}@agency.govt.nz>:bob@ministry.govt.nz" for n in range(60)]
    start = threading.Barrier(2)
    with QueueStore.open(url) as other, ThreadPoolExecutor(2) as pool:
        first = pool.submit(_remember_all, store, keys, start)
        second = pool.submit(_remember_all, other, keys, start)
        mine, theirs = first.result(timeout=60), second.result(timeout=60)
    assert sorted(mine + theirs) == sorted(keys)
