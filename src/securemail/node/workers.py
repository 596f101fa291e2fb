"""The worker loops: claim due entries of one direction and process them concurrently.

A loop wakes when a listener admits something (``QueueAccess.notify``), when an entry in
hand is finished while more may be waiting (the last claim filled every free slot, or a
wake-up came while none was free; in a worker process on SQLite, which no wake-up reaches,
always), or once a second for deferred entries that fell due. A finished entry alone does
not wake the loop: under load that was an empty claim, one transaction, for about every
other message on the receiving node. At most ``CONCURRENCY`` entries of a direction are in
hand at once; an entry whose processing raises an unexpected error is deferred (never lost,
never retried in a tight loop) and the error is logged.

Every outcome names the claim it was made under (``Entry.claimed_by``): a worker that
outlived its lease (stalled, or its node was cut off from the database) and whose entry
another process took over meanwhile has its outcome refused (QueueError LEASE_LOST, see
:class:`securemail.queue.manager.QueueManager`); it logs that and leaves the entry to its
new holder.
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
from securemail.queue import Direction, Entry, NewMessage, QueueError, QueueReason, ReceiptRecord
from securemail.queue.access import QueueAccess
from securemail.queue.manager import DEFAULT_LEASE
from securemail.replies import temporary

log = logging.getLogger("securemail.node")

CONCURRENCY = 16
POLL_SECONDS = 1.0  # one process: listeners wake the loops directly; this finds deferred entries
SHARED_POLL_SECONDS = 0.2  # worker processes on SQLite: no notification reaches them
WARN_POLL_SECONDS = 60.0

Process = Callable[[Entry], Awaitable[Entry]]


@dataclass(frozen=True)
class WorkerLoop:
    """What a claim loop uses: the queue, its wake-up, the claim's owner and the clock."""

    queue: QueueAccess
    direction: Direction
    wake: asyncio.Event  # set when something of ``direction`` was queued
    owner: str  # ``node/pid`` on every claim (crash recovery takes back its own)
    clock: Callable[[], datetime]
    lease: timedelta = DEFAULT_LEASE  # a claim holds this long; renewed every third of it
    poll: float = POLL_SECONDS  # look for due entries at least this often (seconds)
    # Whether every entry queued wakes this loop (its own process's listeners, or NOTIFY on
    # PostgreSQL). A worker process on SQLite hears of nothing: a freed slot always claims.
    told: bool = True


async def run_worker(loop: WorkerLoop, process: Process, stop: asyncio.Event) -> None:
    """Claim and process ``loop.direction`` entries until ``stop`` is set, then finish the
    entries in hand (a drain), renewing their leases meanwhile."""
    queue, wake = loop.queue, loop.wake
    slots = asyncio.Semaphore(CONCURRENCY)
    running: dict[str, asyncio.Task[None]] = {}
    backlog = _Backlog(wake, always=not loop.told)
    renewing = asyncio.create_task(_renew_leases(loop, running))
    while not stop.is_set():
        wake.clear()
        free = CONCURRENCY - len(running)
        if free == 0:
            backlog.maybe = True  # woken with no slot free: what woke it waits for one
            entries = []
        else:
            entries = await queue.db(
                queue.manager.claim,
                loop.direction,
                loop.clock(),
                free,
                owner=loop.owner,
                lease=loop.lease,
                bodies=True,  # every entry is processed at once: one round trip less each
            )
            backlog.maybe = len(entries) == free
        for entry in entries:
            if entry.id in running:
                # Its lease ran out while in hand here (the renewal was late) and this very
                # claim took it back: the attempt in hand goes on, under the new lease.
                continue
            task = asyncio.create_task(_guarded(loop, process, entry, slots))
            running[entry.id] = task
            task.add_done_callback(_forget(running, entry.id))
            task.add_done_callback(backlog.slot_freed)
        if entries and len(entries) == free:
            await asyncio.sleep(0)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), loop.poll)
    if running:
        await asyncio.gather(*running.values(), return_exceptions=True)
    renewing.cancel()


class _Backlog:
    """Whether entries may be waiting for a free slot (mutable by design: the loop's own).

    A freed slot is a reason to claim again only then: without it a backlog drained at
    CONCURRENCY entries per POLL_SECONDS (measured: 16 msg/s); with it always, every
    finished entry cost a claim, most of them empty.
    """

    def __init__(self, wake: asyncio.Event, *, always: bool) -> None:
        self._wake, self._always = wake, always
        self.maybe = False

    def slot_freed(self, _: asyncio.Task[None]) -> None:
        if self.maybe or self._always:
            self._wake.set()


def _forget(
    running: dict[str, asyncio.Task[None]], entry_id: str
) -> Callable[[asyncio.Task[None]], None]:
    def forget(_: asyncio.Task[None]) -> None:
        running.pop(entry_id, None)

    return forget


async def _renew_leases(loop: WorkerLoop, running: dict[str, asyncio.Task[None]]) -> None:
    """Every third of the lease, renew the leases of the entries in hand: only a process
    that died (or stalled a whole lease) loses them to another."""
    queue = loop.queue
    while True:
        await asyncio.sleep(loop.lease.total_seconds() / 3)
        held = list(running)
        if not held:
            continue
        try:
            kept = await queue.db(queue.manager.renew, held, loop.owner, loop.clock(), loop.lease)
        except Exception:  # the database is away: the next round tries again
            log.warning("renewing %d leases failed", len(held), exc_info=True)
            continue
        missing = sorted(set(held) & set(running) - set(kept))
        if missing:
            await _report_lost(loop, missing)


async def _report_lost(loop: WorkerLoop, missing: list[str]) -> None:
    """Log the entries in hand whose leases another process took over (or that went back
    to the queue). An entry missing from a renewal because its attempt was recorded between
    the two is not lost: its claim is still ours, only no longer ACTIVE."""
    queue = loop.queue
    lost = []
    for entry_id in missing:
        entry = await queue.db(queue.manager.get, entry_id)
        if entry is not None and entry.claimed_by != loop.owner:
            lost.append(f"{entry_id} ({entry.claimed_by or 'returned to the queue'})")
    if lost:
        log.warning("leases lost (taken over after they expired): %s", ", ".join(lost))


async def _guarded(
    loop: WorkerLoop, process: Process, entry: Entry, slots: asyncio.Semaphore
) -> None:
    async with slots:
        try:
            await process(entry)
        except QueueError as error:
            if error.reason is not QueueReason.LEASE_LOST:
                await _defer(loop, entry, error)
                return
            # Another process took the entry over after this one's lease expired: its
            # outcome stands, this attempt's is not recorded (nothing was written).
            log.warning("%s: %s: outcome not recorded: %s", entry.id, error.reason, error.detail)
        except Exception as error:  # any bug must leave the entry queued, not active
            await _defer(loop, entry, error)


async def _defer(loop: WorkerLoop, entry: Entry, error: Exception) -> None:
    """Defer an entry whose processing failed unexpectedly (if this claim still holds it)."""
    log.error("processing %s failed; deferred", entry.id, exc_info=error)
    reply = temporary("internal-error", type(error).__name__)
    with contextlib.suppress(Exception):
        await loop.queue.db(
            loop.queue.manager.defer, entry.id, reply, loop.clock(), holder=entry.claimed_by
        )


async def run_warnings(notices: NoticeContext, stop: asyncio.Event) -> None:
    """Send one "delayed" notice for each entry deferred longer than the warning time."""
    queue = notices.queue
    while not stop.is_set():
        now = notices.clock()
        for entry in await queue.db(queue.manager.warnings_due, now):
            body = await queue.db(queue.manager.body, entry.id)
            failed = [
                Failed(r, "4.4.7", entry.reason or "delayed", entry.last_reply or "")
                for r in entry.pending()
            ]
            await send_notice(notices, entry, failed, body, now, action="delayed")
            await queue.db(queue.manager.mark_warned, entry.id, now)
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
        while await queue.db(queue.manager.purge_bodies, older_than, now) and not stop.is_set():
            pass  # a full batch: there may be more
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PURGE_POLL_SECONDS)


async def run_receipt_windows(notices: NoticeContext, stop: asyncio.Event) -> None:
    """When a requested receipt has not come within its window: one failure notice."""
    queue = notices.queue
    while not stop.is_set():
        now = notices.clock()
        for due in await queue.db(queue.tracking.receipts_due, now):
            await expire_receipt(notices, due, now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RECEIPT_POLL_SECONDS)


async def expire_receipt(notices: NoticeContext, due: ReceiptRecord, now: datetime) -> bool:
    """Mark one awaited receipt expired and queue the sender's notice, in one transaction."""
    queue = notices.queue
    entry = await queue.db(queue.manager.get, due.entry_id)
    notice: tuple[NewMessage, ...] = ()
    if entry is not None:
        body = await queue.db(queue.manager.body, due.entry_id)
        failed = [Failed(due.recipient, "4.4.7", "receipt-expired", "")]
        quoted = await quotable_header(notices, entry, body)
        if quoted is not None:
            notice = tuple(local_notice(notices, entry, failed, quoted, now, action="failed"))
    return bool(
        await queue.db(
            queue.tracking.expire_receipt, due.entry_id, due.recipient, now, enqueue=notice
        )
    )
