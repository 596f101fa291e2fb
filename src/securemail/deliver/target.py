"""The delivery contract: how verified inbound mail is put into its recipients' stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from securemail.replies import Reply


class Target(Protocol):
    """A store for verified inbound mail: a Maildir the node hosts, or the organisation's server.

    Contract for :meth:`deliver`:

    - exactly one Reply per distinct recipient; a store problem is a Reply, never an
      exception (an exception is a bug, and the worker treats it as temporary);
    - 250 only once the message is durably in that recipient's store;
    - 4xx when it may succeed later: store down, disk full, timeout, a drop before the answer;
    - 5xx only for a definite refusal: no such mailbox, an address the store cannot hold;
    - ``key`` (hex) identifies this message's content: delivering the same key to the same
      recipient twice stores it once, where the store can tell (so at-least-once callers get
      exactly-once there). Each implementation says whether it can.
    """

    async def deliver(
        self, mail_from: str, recipients: Sequence[str], body: bytes, key: str
    ) -> dict[str, Reply]:
        """Store ``body`` for each recipient; see the class contract."""
        ...
