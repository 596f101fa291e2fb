"""Wake-ups from other processes and nodes: PostgreSQL LISTEN for new queue work.

Every enqueue on PostgreSQL sends NOTIFY on :data:`securemail.queue.schema.WORK_CHANNEL`
with the entry's direction, delivered when it commits. A worker process listens on its own
connection (psycopg 3, autocommit) and wakes the loop of that direction at once, so an
entry admitted by a listener in another process, or on another node, is claimed without
waiting for a poll. SQLite has no notifications: its worker processes poll
(``SHARED_POLL_SECONDS``). A lost connection is retried; the loops' poll covers the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import psycopg
from sqlalchemy import make_url

from securemail.queue.model import Direction
from securemail.queue.schema import WORK_CHANNEL

log = logging.getLogger("securemail.node")
RECONNECT_SECONDS = 2.0
STOP_CHECK_SECONDS = 0.5


def listens(url: str) -> bool:
    """Whether the database at ``url`` can send wake-ups (PostgreSQL)."""
    return make_url(url).get_backend_name() == "postgresql"


async def listen_for_work(
    url: str, wake: Mapping[Direction, asyncio.Event], stop: asyncio.Event
) -> None:
    """Set ``wake[direction]`` for every notification of new work, until ``stop``."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {WORK_CHANNEL}")
                for event in wake.values():  # work queued while we were not listening
                    event.set()
                await _relay(conn, wake, stop)
        except (psycopg.Error, OSError) as error:
            log.warning("listening for queue work failed (%s); polling meanwhile", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)


async def _relay(
    conn: psycopg.AsyncConnection[object],
    wake: Mapping[Direction, asyncio.Event],
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        # The timeout only lets the loop see ``stop``; no query is sent meanwhile.
        async for note in conn.notifies(timeout=STOP_CHECK_SECONDS):
            with contextlib.suppress(ValueError):
                wake[Direction(note.payload)].set()
