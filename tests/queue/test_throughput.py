"""How fast a durable enqueue is on SQLite (printed for the docs, not asserted)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from securemail.queue import QueueStore
from tests.queue.conftest import NOW, message

COUNT = 1000
SIZE = 4096


def test_sqlite_enqueue_throughput(tmp_path: Path) -> None:
    """1,000 enqueues of 4 KiB messages, each one fsynced before it returns, all stored."""
    body = b"x" * SIZE
    with QueueStore.open(f"sqlite:///{tmp_path / 'queue.db'}") as store:
        started = time.perf_counter()
        for n in range(COUNT):
            store.enqueue(message(body=body), NOW + timedelta(microseconds=n))
        elapsed = time.perf_counter() - started
        assert sum(store.counts().values()) == COUNT
    print(f"\nSQLite enqueue: {COUNT} x {SIZE} B in {elapsed:.2f} s = {COUNT / elapsed:.0f}/s")
