"""The node's CPU threads: S/MIME signing, encryption and their undoing, off the event loop.

Why threads: an RSA-2048 private-key operation (the signature on every message sent, the key
transport on every message received, the signature on every receipt) costs about 1 ms, and
pyca/cryptography releases the GIL while it runs: in one of these threads it runs on one
core while the event loop goes on serving SMTP sessions on another. The rest of protect and
unprotect (MIME, DER, small hashes) holds the GIL wherever it runs.

Why not the loop's default executor: that one (``min(32, cores + 4)`` threads) also runs
blocking I/O of every role (Maildir fsyncs, directory fetches, password hashing), which may
wait on a disk or a network with a thread each. CPU work gains nothing from more threads
than cores; a pool of its own, one thread per core, neither queues behind that I/O nor adds
threads that only contend for the GIL.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least one."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


class CpuThreads:
    """Runs CPU-bound message work on the node's own pool (a
    :class:`securemail.queue.threads.RunOffLoop`), ``threads`` of them."""

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="cpu")

    def __call__(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        """Wait for the calls in hand and stop the threads (after the workers drained)."""
        self._executor.shutdown(wait=True)
