"""A stand-in for the node's CPU threads that records what ran on them, and on which thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class RecordingThreads:
    """See :class:`securemail.queue.threads.RunOffLoop`: runs each call in a thread and
    records the function's name and the thread it ran on."""

    ran: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        def run() -> T:
            self.ran.append((getattr(call, "__name__", repr(call)), threading.get_ident()))
            return call(*args, **kwargs)

        return await asyncio.to_thread(run)

    def names(self) -> list[str]:
        """The functions that ran, in order."""
        return [name for name, _ in self.ran]

    def off_the_loop(self) -> bool:
        """Whether every call ran on a thread other than the test's (the event loop's)."""
        loop_thread = threading.get_ident()
        return all(thread != loop_thread for _, thread in self.ran)
