"""The queue as a role on the event loop holds it: store calls off the loop, group commits,
and the wake-up of the workers that take what was just queued."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from securemail.queue.commits import GroupCommit
from securemail.queue.dedup import Deduplication
from securemail.queue.holds import KeyHolds
from securemail.queue.manager import QueueManager
from securemail.queue.model import Direction, Entry, NewMessage
from securemail.queue.receipts import ReceiptTracking
from securemail.queue.steering import Steering
from securemail.queue.threads import RunOffLoop
from securemail.queue.upstream import UpstreamBacklog


class OperatorQueue(Steering, ReceiptTracking, UpstreamBacklog, KeyHolds, Protocol):
    """What an operator's tools read and change: steering, the receipts' tracking, an
    upstream queue's backlog and the mail held for a key."""


@dataclass(frozen=True)
class QueueAccess:
    """One node's queue, shared by its roles (built once by the composition root).

    The roles see the store only through the Protocols of the parts they use.
    """

    manager: QueueManager  # admit, claim, complete, defer
    tracking: ReceiptTracking  # signatures sent, receipts taken, windows expired
    keys: Deduplication  # idempotency keys of what was delivered
    db: RunOffLoop  # run a store call on the database thread(s)
    commits: GroupCommit  # enqueue and record, batched into shared transactions
    notify: Callable[[Direction], None]  # wake the workers of a direction
    upstream: UpstreamBacklog  # an upstream queue's backlog per member
    holds: KeyHolds  # mail held until its organisation's key is installed

    async def body(self, entry: Entry) -> bytes:
        """The message of ``entry``: the one its claim read, or read now."""
        if entry.body is not None:
            return entry.body
        return await self.db(self.manager.body, entry.id)

    def notify_about(self, messages: Iterable[NewMessage]) -> None:
        """Wake the workers that will take ``messages`` (just queued)."""
        for direction in {m.direction for m in messages}:
            self.notify(direction)
