"""The worker loops: claim due entries of one direction and process them concurrently.

A loop wakes when a listener admits something (``QueueAccess.notify``), when an entry in hand is
finished (a slot is free), or once a second for deferred entries that fell due. At most
``CONCURRENCY`` entries of a direction are in hand at once; an entry whose processing
raises an unexpected error is deferred (never lost, never retried in a tight loop) and the
error is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from securemail.bounces import NoticeContext, local_notice, quotable_header, send_notice
from securemail.notices import Failed
from securemail.queue import Direction, Entry, NewMessage, ReceiptRecord
from securemail.queue.access import QueueAccess
from securemail.replies import temporary

log = logging.getLogger("securemail.node")

CONCURRENCY = 16
POLL_SECONDS = 1.0
WARN_POLL_SECONDS = 60.0

Process = Callable[[Entry], Awaitable[Entry]]


@dataclass(frozen=True)
class WorkerLoop:
    """What a claim loop uses: the queue, its wake-up, the claim's owner and the clock."""

    queue: QueueAccess
    direction: Direction
    wake: asyncio.Event  # set when something of ``direction`` was queued
    owner: str  # this node's name, on every claim (crash recovery takes back its own)
    clock: Callable[[], datetime]


async def run_worker(loop: WorkerLoop, process: Process, stop: asyncio.Event) -> None:
    """Claim and process ``loop.direction`` entries until ``stop`` is set."""
    queue, wake = loop.queue, loop.wake
    slots = asyncio.Semaphore(CONCURRENCY)
    running: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        wake.clear()
        free = CONCURRENCY - len(running)
        entries = []
        if free > 0:
            entries = await queue.db(
                queue.store.claim, loop.direction, loop.clock(), free, owner=loop.owner
            )
        for entry in entries:
            task = asyncio.create_task(_guarded(loop, process, entry, slots))
            running.add(task)
            task.add_done_callback(running.discard)
            # A free slot is a reason to claim again: without this a backlog drained at
            # CONCURRENCY entries per POLL_SECONDS (measured: 16 msg/s).
            task.add_done_callback(lambda _: wake.set())
        if entries and len(entries) == free:
            await asyncio.sleep(0)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), POLL_SECONDS)
    if running:
        await asyncio.gather(*running, return_exceptions=True)


async def _guarded(
    loop: WorkerLoop, process: Process, entry: Entry, slots: asyncio.Semaphore
) -> None:
    async with slots:
        try:
            await process(entry)
        except Exception as error:  # any bug must leave the entry queued, not active
            log.exception("processing %s failed; deferred", entry.id)
            reply = temporary("internal-error", type(error).__name__)
            with contextlib.suppress(Exception):
                await loop.queue.db(loop.queue.store.defer, entry.id, reply, loop.clock())


async def run_warnings(notices: NoticeContext, stop: asyncio.Event) -> None:
    """Send one "delayed" notice for each entry deferred longer than the warning time."""
    queue = notices.queue
    while not stop.is_set():
        now = notices.clock()
        for entry in await queue.db(queue.store.warnings_due, now):
            body = await queue.db(queue.store.body, entry.id)
            failed = [
                Failed(r, "4.4.7", entry.reason or "delayed", entry.last_reply or "")
                for r in entry.pending()
            ]
            await send_notice(notices, entry, failed, body, now, action="delayed")
            await queue.db(queue.store.mark_warned, entry.id, now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WARN_POLL_SECONDS)


RECEIPT_POLL_SECONDS = 5.0
PURGE_POLL_SECONDS = 300.0


async def run_body_purge(
    queue: QueueAccess, keep_body: timedelta, clock: Callable[[], datetime], stop: asyncio.Event
) -> None:
    """Every few minutes, drop the bodies of entries final for ``keep_body`` (``[retry]
    keep_body``; :meth:`securemail.queue.QueueStore.purge_bodies`: digests, history and
    evidence stay)."""
    while not stop.is_set():
        now = clock()
        older_than = now - keep_body
        while await queue.db(queue.store.purge_bodies, older_than, now) and not stop.is_set():
            pass  # a full batch: there may be more
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PURGE_POLL_SECONDS)


async def run_receipt_windows(notices: NoticeContext, stop: asyncio.Event) -> None:
    """When a requested receipt has not come within its window: one failure notice."""
    queue = notices.queue
    while not stop.is_set():
        now = notices.clock()
        for due in await queue.db(queue.store.receipts_due, now):
            await expire_receipt(notices, due, now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RECEIPT_POLL_SECONDS)


async def expire_receipt(notices: NoticeContext, due: ReceiptRecord, now: datetime) -> bool:
    """Mark one awaited receipt expired and queue the sender's notice, in one transaction."""
    queue = notices.queue
    entry = await queue.db(queue.store.get, due.entry_id)
    notice: tuple[NewMessage, ...] = ()
    if entry is not None:
        body = await queue.db(queue.store.body, due.entry_id)
        failed = [Failed(due.recipient, "4.4.7", "receipt-expired", "")]
        quoted = await quotable_header(notices, entry, body)
        if quoted is not None:
            notice = tuple(local_notice(notices, entry, failed, quoted, now, action="failed"))
    return bool(
        await queue.db(queue.store.expire_receipt, due.entry_id, due.recipient, now, enqueue=notice)
    )
