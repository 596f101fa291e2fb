"""Group commit: the queue writes of many sessions and workers in one transaction each.

Every accepted message, every reservation of a delivery's idempotency keys and every
attempt needs a durable commit (an fsync) before its SMTP reply or its next step. One
commit per message spent most of a node's time waiting on the disk. Here, requests that
arrive while a commit is running wait for the next one, which takes them all: under load,
one fsync serves many messages; idle, a request is committed at once. The contract for
callers is unchanged: ``enqueue`` returns only after the entry is committed (so the 250
after it is true), ``reserve`` and ``record`` only after theirs are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from securemail.queue.dedup import Deduplication, check_key
from securemail.queue.manager import QueueManager
from securemail.queue.model import (
    Attempt,
    Entry,
    NewMessage,
    QueueError,
    ReceiptOutcome,
    ReceiptTaken,
    Reservation,
)
from securemail.queue.receipts import ReceiptTracking
from securemail.queue.threads import RunOffLoop

log = logging.getLogger("securemail.node")

I = TypeVar("I")  # noqa: E741 (an item of a batch)
O = TypeVar("O")  # noqa: E741 (its result)
MAX_BATCH = 64


class _Batcher(Generic[I, O]):
    """Collects items; one task at a time commits everything collected so far."""

    def __init__(
        self,
        run: Callable[..., Awaitable[Any]],
        many: Callable[[Sequence[I], datetime], list[O]],
        one: Callable[[I, datetime], O],
        clock: Callable[[], datetime],
    ) -> None:
        self._run, self._many, self._one, self._clock = run, many, one, clock
        self._waiting: list[tuple[I, asyncio.Future[O]]] = []
        self._busy = False

    async def submit(self, item: I) -> O:
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._commit(batch)
        finally:
            self._busy = False

    async def _commit(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._run(self._many, items, self._clock())
        except QueueError as error:
            if len(batch) == 1:
                _fail(batch, error)
                return
            # One bad item (e.g. an entry an operator held meanwhile) must not fail the
            # others: commit them one by one, each with its own answer.
            for item, future in batch:
                await self._commit_one(item, future)
            return
        except Exception as error:  # the database is gone: every waiter gets the error
            _fail(batch, error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _commit_one(self, item: I, future: asyncio.Future[O]) -> None:
        try:
            result = await self._run(self._one, item, self._clock())
        except Exception as error:
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(result)


def _fail(batch: Sequence[tuple[Any, asyncio.Future[Any]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


class CommittedStore(QueueManager, Deduplication, ReceiptTracking, Protocol):
    """The parts of the store whose writes are grouped."""


Reserve = tuple[tuple[str, ...], str]  # keys, and the entry that reserves them


class GroupCommit:
    """``enqueue``, ``reserve``, ``record`` and ``accept_receipt`` for a node, batched into
    shared transactions."""

    def __init__(
        self, store: CommittedStore, run: RunOffLoop, clock: Callable[[], datetime]
    ) -> None:
        self._enqueue: _Batcher[NewMessage, str] = _Batcher(
            run, store.enqueue_many, store.enqueue, clock
        )
        self._reserve: _Batcher[Reserve, dict[str, Reservation]] = _Batcher(
            run, store.reserve_many, _reserve_one(store), clock
        )
        self._record: _Batcher[Attempt, Entry] = _Batcher(
            run, store.record_many, _record_one(store), clock
        )
        self._receipts: _Batcher[ReceiptTaken, ReceiptOutcome] = _Batcher(
            run, store.accept_receipts, _accept_one(store), clock
        )

    async def enqueue(self, new: NewMessage) -> str:
        return await self._enqueue.submit(new)

    async def reserve(self, keys: Sequence[str], entry_id: str) -> dict[str, Reservation]:
        """:meth:`securemail.queue.dedup.Deduplication.reserve`, committed with others."""
        for key in keys:
            check_key(key)  # one bad key must not fail the batch it would join
        return await self._reserve.submit((tuple(keys), entry_id))

    async def record(self, attempt: Attempt) -> Entry:
        return await self._record.submit(attempt)

    async def accept_receipt(self, taken: ReceiptTaken) -> ReceiptOutcome:
        """:meth:`securemail.queue.receipts.ReceiptTracking.accept_receipt`, committed
        with others (its notice commits with it, as there)."""
        return await self._receipts.submit(taken)


def _reserve_one(store: Deduplication) -> Callable[[Reserve, datetime], dict[str, Reservation]]:
    def reserve(request: Reserve, now: datetime) -> dict[str, Reservation]:
        return store.reserve(request[0], request[1], now)

    return reserve


def _record_one(store: QueueManager) -> Callable[[Attempt, datetime], Entry]:
    def record(attempt: Attempt, now: datetime) -> Entry:
        return store.record(
            attempt.entry_id,
            attempt.results,
            now,
            events=attempt.events,
            remember=attempt.remember,
            signatures=attempt.signatures,
            enqueue=attempt.enqueue,
            holder=attempt.holder,
            relays=dict(attempt.relays),
        )

    return record


def _accept_one(store: ReceiptTracking) -> Callable[[ReceiptTaken, datetime], ReceiptOutcome]:
    def accept(taken: ReceiptTaken, now: datetime) -> ReceiptOutcome:
        return store.accept_receipts([taken], now)[0]

    return accept
