"""In-flow control: a listener slows new mail while the workers are behind (Postfix's
``in_flow_delay``).

Theory of operation. A node accepts mail faster than it can protect, relay and deliver it
when many clients send at once: the 250s keep coming, the queue grows, and each message
waits longer between its 250 and its delivery (a burst of 1000 messages to a node that
does 80 a second leaves the last one 12 s in the queue). Postfix answers this with
``in_flow_delay`` (1 s by default): before taking a new message, ``cleanup`` waits for a
token the queue manager gives for each message it takes in, at most that long. Here the
listeners ask the queue instead: before answering MAIL FROM, a session waits while more
than ``backlog`` entries wait for their first claim (``QueueManager.waiting``), at most
``delay`` seconds, and then goes on either way. So a client is never refused and never
waits long; a burst is taken in at the pace the workers drain it, and what is queued
is worked within about ``backlog`` / (messages a second) of its 250. The sending MTA
keeps the rest in its own queue, which is where a message that has not been accepted
belongs.

Only entries no worker has taken count (INCOMING), not those in hand (ACTIVE): a busy
node always has its workers' slots full, and counting them would hold every session on a
node that merely keeps up. The default of 32 is two claims' worth (a worker loop takes up
to 16 at a time), so the workers never run dry while sessions wait.

The backlog is read from the database at most every ``POLL`` seconds by one query that
every waiting session shares, so the cost does not grow with the number of sessions, and
it counts the workers of every process and node on the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

POLL = 0.05  # seconds between readings of the backlog while sessions wait


@dataclass(frozen=True)
class FlowLimits:
    """``delay``: the longest a session waits before MAIL is answered (0 turns the control
    off); ``backlog``: the number of entries waiting for a worker above which it waits."""

    delay: float = 1.0
    backlog: int = 32

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError("in_flow_delay must not be negative")
        if self.backlog < 1:
            raise ValueError("in_flow_backlog must be at least 1")


class InFlow:
    """The pause before MAIL, shared by a process's listeners."""

    def __init__(
        self,
        limits: FlowLimits,
        waiting: Callable[[], Awaitable[int]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._waiting = waiting
        self._clock = clock
        self._reading: asyncio.Task[int] | None = None
        self._backlog = 0
        self._read_at = float("-inf")

    async def pause(self, before_waiting: Callable[[], None] = lambda: None) -> float:
        """Wait while the backlog is above the limit, at most ``delay``; the seconds waited.

        ``before_waiting`` is called before each sleep: the session writes the replies it
        held for a pipelined group then (RFC 2920 §3.2: no replies held while waiting). A
        failure to read the backlog (the database is down) does not hold the session:
        admission will answer for the database itself.
        """
        if self.limits.delay <= 0:
            return 0.0
        start = self._clock()
        while True:
            try:
                backlog = await self._current()
            except Exception:
                return self._clock() - start
            waited = self._clock() - start
            left = self.limits.delay - waited
            if backlog <= self.limits.backlog or left <= 0:
                return waited
            before_waiting()
            await asyncio.sleep(min(POLL, left))

    async def _current(self) -> int:
        """The backlog, read again if the last reading is older than ``POLL``; sessions
        asking meanwhile share the one reading in flight."""
        if self._clock() - self._read_at < POLL:
            return self._backlog
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        return await asyncio.shield(reading)

    async def _read(self) -> int:
        try:
            self._backlog = await self._waiting()
            self._read_at = self._clock()
            return self._backlog
        finally:
            self._reading = None
