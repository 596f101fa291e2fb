"""The node's CPU threads: calls run off the event loop, at most as many at once as there
are threads, and closing waits for the calls in hand."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from securemail.node.threads import CpuThreads, usable_cores


def test_calls_run_on_the_pool_never_more_at_once_than_its_threads() -> None:
    """Six calls on a pool of two: each on a ``cpu`` thread, not the loop's, two at most
    at the same time, every result returned to its caller."""
    running, most = 0, 0
    lock = threading.Lock()

    def work(n: int) -> tuple[int, str]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return n * n, threading.current_thread().name

    async def scenario() -> list[tuple[int, str]]:
        threads = CpuThreads(2)
        try:
            return await asyncio.gather(*(threads(work, n) for n in range(6)))
        finally:
            threads.close()

    results = asyncio.run(scenario())
    assert [square for square, _ in results] == [n * n for n in range(6)]
    assert all(name.startswith("cpu") for _, name in results)
    assert most == 2


def test_close_waits_for_the_calls_in_hand() -> None:
    """A call still running when the pool is closed (a worker draining at SIGTERM)
    finishes and its result reaches its caller."""
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.1)
        finished.set()
        return "done"

    async def scenario() -> str:
        threads = CpuThreads(1)
        call = asyncio.ensure_future(threads(slow))
        await asyncio.sleep(0.01)
        await asyncio.to_thread(threads.close)
        assert finished.is_set()
        return await call

    assert asyncio.run(scenario()) == "done"


def test_the_pool_is_sized_to_the_cores_the_process_may_use() -> None:
    """usable_cores is the process's CPU affinity (what a container or taskset allows)."""
    assert usable_cores() == len(os.sched_getaffinity(0)) >= 1
