"""The queue as a role on the event loop holds it: store calls off the loop, group commits,
and the wake-up of the workers that take what was just queued."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from securemail.queue.commits import GroupCommit
from securemail.queue.model import Direction, NewMessage
from securemail.queue.store import QueueStore
from securemail.queue.threads import RunOffLoop


@dataclass(frozen=True)
class QueueAccess:
    """One node's queue, shared by its roles (built once by the composition root)."""

    store: QueueStore
    db: RunOffLoop  # run a store call on the database thread(s)
    commits: GroupCommit  # enqueue and record, batched into shared transactions
    notify: Callable[[Direction], None]  # wake the workers of a direction

    def notify_about(self, messages: Iterable[NewMessage]) -> None:
        """Wake the workers that will take ``messages`` (just queued)."""
        for direction in {m.direction for m in messages}:
            self.notify(direction)
