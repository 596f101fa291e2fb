"""Store calls off the event loop: the one way a role on asyncio reaches the database."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class RunOffLoop(Protocol):
    """Runs a store call on the node's database thread(s): ``await db(fn, *args)``."""

    def __call__(
        self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


class DatabaseThreads:
    """Runs store calls off the event loop, on the node's database thread(s) (a RunOffLoop).

    SQLite gets one thread: its writers would otherwise wait for each other by sleeping
    in SQLite's busy handler (up to 100 ms a step), which measured as the largest cost
    per message. PostgreSQL gets a few, since it locks rows, not the database.
    """

    def __init__(self, url: str) -> None:
        self._threads = 1 if url.startswith("sqlite") else 4
        self._executor: ThreadPoolExecutor | None = None

    def __call__(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="queue")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        """Wait for the calls in hand and stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
